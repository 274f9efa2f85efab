"""The gateway's traffic log sent from a child process (services/deployment/log_shipper.py), with real
processes: the shipper child, the embedded SQLite queue and an in-process datastore worker, and
`flywheel serve gateway` itself with the official client. Nothing logged is lost, when the child is
killed between batches too."""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path
from typing import Any

import openai
import yaml

from orchestrator.jobs.store import JobStore
from orchestrator.pipeline.embedded import embedded_worker
from services.deployment.log_shipper import LogShipper
from services.deployment.traffic_log import QueuedRecords, TrafficLogger
from tests.gateway.fake_teacher import fake_teacher
from tests.gateway.test_gateway import settings_for, stored
from tests.servers import serve, start_gateway_process, wait_until


def record(i: int) -> dict[str, Any]:
    return {"workload_id": "news_topic", "client_id": "desk-1", "timestamp": 1_760_000_000 + i,
            "request": {"model": "t", "messages": [{"role": "user", "content": f"headline {i}"}]},
            "response": {"choices": [{"index": 0, "message": {"role": "assistant", "content": "[[[Macro]]]"}}]}}


def test_the_shipper_sends_every_record_and_a_killed_child_is_replaced_without_loss(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "http://unused")
    with embedded_worker(settings, JobStore(settings.job_store.url)):
        shipper = LogShipper(settings.queue, settings.gateway).start()
        for i in range(300):
            shipper.log(record(i))
        assert len(stored(settings, "news_topic", 300)) == 300
        first = shipper._child
        assert first is not None and first.poll() is None
        os.kill(first.pid, signal.SIGKILL)  # between batches: everything it was handed is sent
        first.wait(10)
        for i in range(300, 400):
            shipper.log(record(i))
        wait_until(lambda: shipper.restarts == 1, timeout=20, what="a new shipper child")
        assert shipper.spooled >= 1, "what the dead child could not take went to the spool"
        found = stored(settings, "news_topic", 400)
        shipper.close()
    assert len(found) == 400, "the new child sent the spool, then the rest"
    assert {r.request.model_dump(mode="json")["messages"][0]["content"] for r in found} == {
        f"headline {i}" for i in range(400)}
    assert shipper.spool_depth == 0 and shipper._child is not None and shipper._child.returncode == 0


def test_close_waits_for_the_child_to_send_what_it_holds(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "http://unused", log_flush_interval_s=30)  # only the close sends the batch
    shipper = LogShipper(settings.queue, settings.gateway).start()
    for i in range(50):
        shipper.log(record(i))
    shipper.close()
    assert shipper.handed_over == 50 and shipper.spooled == 0
    with embedded_worker(settings, JobStore(settings.job_store.url)):  # the queue held them while no worker ran
        assert len(stored(settings, "news_topic", 50)) == 50


def test_flywheel_serve_gateway_logs_through_its_shipper(tmp_path: Path) -> None:
    """The gateway process as a user starts it; its teacher calls reach the log store through the shipper, and a
    stop (SIGTERM) sends what was pending before the process exits."""
    with serve(fake_teacher()) as teacher_url:
        settings = settings_for(tmp_path, teacher_url, log_flush_interval_s=30)  # the stop, not the timer, sends
        config = tmp_path / "gateway.yaml"
        config.write_text(yaml.safe_dump(settings.model_dump(mode="json", exclude={"workloads"})))
        gateway, base = start_gateway_process(config)
        try:
            client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)
            for i in range(20):
                answer = client.chat.completions.create(model="news", messages=[
                    {"role": "user", "content": f"Acme profit beats {i}"}])
                assert answer.choices[0].message.content == "[[[Earnings]]]"
        finally:
            gateway.send_signal(signal.SIGTERM)
            _, errors = gateway.communicate(timeout=60)
    assert gateway.returncode in (0, -signal.SIGTERM), errors[-2000:]  # uvicorn re-raises the signal it stopped on
    assert "Application shutdown complete" in errors
    assert "20 calls received, 20 sent, 0 spooled" in errors, errors[-2000:]
    with embedded_worker(settings, JobStore(settings.job_store.url)):
        logged = stored(settings, "news_topic", 20)
    assert sorted(r.request.model_dump(mode="json")["messages"][0]["content"] for r in logged) == sorted(
        f"Acme profit beats {i}" for i in range(20))


class _Collect:
    """A Celery app stand-in that keeps what `send_task` is given (the broker is not the subject here)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def send_task(self, name: str, kwargs: dict[str, Any], **_: Any) -> None:
        self.records += kwargs["payload"]["records"]


def _append_forever(spool: Path, count: int) -> None:
    appender = QueuedRecords(spool, max_pending=1)
    for i in range(count):
        appender._spool([record(i)])  # what the gateway does when its queue is full


def test_appends_from_another_process_while_the_spool_is_resent_are_never_lost(tmp_path: Path) -> None:
    """The gateway appends on queue overflow while its shipper child renames the spool to re-send it: with the
    spool's file lock every append lands either in the file being re-sent, before it is read, or in the next one."""
    spool = tmp_path / "spool.jsonl"
    app = _Collect()
    sender = TrafficLogger(app, spool, batch_size=7)
    appender = multiprocessing.get_context("fork").Process(target=_append_forever, args=(spool, 1500))
    appender.start()
    while appender.is_alive():
        if spool.exists():
            assert sender._flush_spool()
    appender.join()
    assert appender.exitcode == 0
    if spool.exists():
        assert sender._flush_spool()
    contents = [r["request"]["messages"][0]["content"] for r in app.records]
    assert sorted(contents) == sorted(f"headline {i}" for i in range(1500)), "every append re-sent exactly once"
