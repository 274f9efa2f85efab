"""The gateway over real HTTP: the official `openai` client -> our gateway (uvicorn) -> a local
teacher stand-in (uvicorn). Calls are logged through the queue into the log store (streamed
answers reassembled); with the queue down they spool to a file and arrive later, once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from openai import OpenAI

from orchestrator.jobs.store import JobStore
from orchestrator.pipeline.embedded import embedded_worker
from services.datastore.stores.sqlite import SqliteLogStore
from services.deployment.gateway.app import create_gateway
from services.deployment.traffic_log import TrafficLogger
from services.domain.queue import make_celery_app
from services.domain.settings import QueueSettings, Settings
from tests.gateway.fake_teacher import fake_teacher
from tests.servers import serve


def settings_for(tmp_path: Path, teacher_url: str, **gateway: object) -> Settings:
    return Settings.model_validate({
        "log_store": {"sqlite_path": str(tmp_path / "logs.sqlite")},
        "job_store": {"url": f"sqlite:///{tmp_path / 'jobs.sqlite'}"},
        "queue": {"embedded_dir": str(tmp_path / "queue"), "polling_interval_s": 0.05},
        "teacher": {"model": "big-teacher", "base_url": f"{teacher_url}/v1"},
        "gateway": {"spool_path": str(tmp_path / "spool.jsonl"), "log_flush_interval_s": 0.2,
                    "aliases": {"news": "news_topic"}, **gateway},
        "tracking": {"enabled": False},
    })


@contextmanager
def logging_gateway(settings: Settings, **gateway: Any) -> Iterator[tuple[str, OpenAI]]:
    """The gateway (its URL) with an in-process worker logging its traffic, and the official client for it
    (its own retries off, so the gateway's are what a test sees)."""
    with embedded_worker(settings, JobStore(settings.job_store.url)) as worker_app, \
            serve(create_gateway(settings, celery_app=worker_app, **gateway)) as gateway_url:
        yield gateway_url, OpenAI(base_url=f"{gateway_url}/v1", api_key="unused", max_retries=0, timeout=30)


def stored(settings: Settings, workload: str, count: int, timeout: float = 30) -> list:
    deadline = time.monotonic() + timeout
    while True:
        with SqliteLogStore(settings.log_store.sqlite_path) as store:
            records = list(store.export(workload_id=workload))
        if len(records) >= count or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def test_openai_client_through_the_gateway_is_answered_and_logged(tmp_path: Path) -> None:
    teacher = fake_teacher()
    with serve(teacher) as teacher_url:
        settings = settings_for(tmp_path, teacher_url)
        with logging_gateway(settings) as (gateway_url, client):
            raw = client.chat.completions.with_raw_response.create(
                model="news", messages=[{"role": "user", "content": "Acme quarterly profit beats"}],
                extra_headers={"X-Flywheel-Client": "desk-7"})
            completion = raw.parse()
            assert completion.choices[0].message.content == "[[[Earnings]]]"
            assert raw.headers["x-flywheel-served-by"] == "teacher" and raw.headers["x-flywheel-route-phase"] == "teacher"
            assert completion.model == "big-teacher", "the model field names the model that answered"
            assert teacher.state.received[-1]["model"] == "big-teacher"

            stream = client.chat.completions.create(model="news", stream=True,
                                                    messages=[{"role": "user", "content": "Fed holds rates"}],
                                                    metadata={"client_id": "desk-9"})
            assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "[[[Macro]]]"

            vectors = client.embeddings.create(model="filings", input=["10-K risk factors", "8-K"], dimensions=4,
                                               extra_body={"input_type": "passage"})
            assert [len(d.embedding) for d in vectors.data] == [4, 4]
            assert teacher.state.received[-1]["input_type"] == "passage", "forwarded as sent"

            from openai import InternalServerError
            with pytest.raises(InternalServerError, match="teacher overloaded"):
                client.chat.completions.create(model="news", messages=[{"role": "user", "content": "please fail"}])
            models = {m.id for m in client.models.list()}
            assert "news" in models
            import httpx

            counted = 'flywheel_gateway_requests_total{endpoint="chat",served_by="teacher",status="200",workload="news_topic"} 2.0'
            deadline = time.monotonic() + 10  # a stream is counted after its last byte, which the client may see first
            while counted not in (metrics := httpx.get(f"{gateway_url}/metrics").text) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert counted in metrics
            assert "flywheel_gateway_spool_depth 0.0" in metrics

            chats = stored(settings, "news_topic", 2)
            embeds = stored(settings, "filings", 1)
    # After shutdown (the last flush), the route store holds the traffic the dashboard shows.
    from services.deployment.routes import RouteStore

    traffic = RouteStore(settings.job_store.url).traffic("news_topic")
    assert traffic["teacher"] == {"requests": 2, "input_tokens": 24, "output_tokens": 8}, "failures are not counted"
    assert traffic["student"]["requests"] == 0
    by_client = {r.client_id: r for r in chats}
    assert set(by_client) == {"desk-7", "desk-9"}, "header and metadata name the client; failures are not logged"
    streamed = by_client["desk-9"].response.model_dump(mode="json")
    assert streamed["choices"][0]["message"]["content"] == "[[[Macro]]]", "a streamed answer is logged reassembled"
    assert streamed["usage"]["completion_tokens"] == 4
    assert len(embeds) == 1 and len(embeds[0].response.model_dump(mode="json")["data"]) == 2
    assert embeds[0].request.model_dump(mode="json")["input_type"] == "passage", "logged: queries and passages differ"


def test_gateway_api_keys_name_the_client_and_errors_are_openai_shaped(tmp_path: Path) -> None:
    import httpx

    with serve(fake_teacher()) as teacher_url:
        settings = settings_for(tmp_path, teacher_url, auth_enabled=True,
                                keys=[{"name": "desk-3-key", "token": "sk-desk3", "client_id": "desk-3"}])
        logger = TrafficLogger(make_celery_app(settings.queue, name="t"), settings.gateway.spool_path)
        with serve(create_gateway(settings, logger=logger)) as gateway_url:
            denied = httpx.post(f"{gateway_url}/v1/chat/completions", json={"model": "news", "messages": []})
            assert denied.status_code == 401 and denied.json()["error"]["code"] == "invalid_api_key"
            bad = httpx.post(f"{gateway_url}/v1/chat/completions", content=b"{nope",
                             headers={"Authorization": "Bearer sk-desk3"})
            assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
            ok = httpx.post(f"{gateway_url}/v1/chat/completions", headers={
                "Authorization": "Bearer sk-desk3", "X-Flywheel-Client": "someone-else"},
                json={"model": "news", "messages": [{"role": "user", "content": "earnings"}]})
            assert ok.status_code == 200
    queued = logger._queue.get_nowait()
    assert queued["client_id"] == "desk-3", "the API key's client wins over the header"


def test_logging_spools_while_the_queue_is_down_and_flushes_once(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "http://unused")
    down = make_celery_app(QueueSettings(backend="redis", broker_url="redis://127.0.0.1:1/0"), name="down")
    down.conf.broker_connection_timeout = 0.5
    down.conf.broker_connection_max_retries = 0
    logger = TrafficLogger(down, settings.gateway.spool_path, batch_size=10, flush_interval_s=0.1).start()
    records = [{"workload_id": "news_topic", "client_id": "desk-1", "timestamp": 1_760_000_000 + i,
                "request": {"model": "t", "messages": [{"role": "user", "content": f"headline {i}"}]},
                "response": {"choices": [{"index": 0, "message": {"role": "assistant", "content": "[[[Macro]]]"}}]}}
               for i in range(25)]
    for r in records:
        logger.log(r)
    deadline = time.monotonic() + 30
    while logger.spooled < 25 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert logger.spooled == 25 and logger.spool_depth == 25, "nothing is lost while the queue is down"
    with embedded_worker(settings, JobStore(settings.job_store.url)) as worker_app:
        logger.app = worker_app  # the queue is back
        logger.log(records[0])  # a re-sent record: stored once (ids are content hashes)
        found = stored(settings, "news_topic", 25)
        logger.close()
    assert len(found) == 25 and logger.spool_depth == 0


def test_logged_calls_survive_a_log_store_outage(tmp_path: Path) -> None:
    """The store is unreachable (a file sits where its folder should be): the datastore task retries
    with backoff, and once the store is back every record lands, once."""
    settings = settings_for(tmp_path, "http://unused")
    blocker = tmp_path / "store-dir"
    blocker.write_text("not a directory")
    settings = settings.model_copy(update={"log_store": settings.log_store.model_copy(
        update={"sqlite_path": blocker / "logs.sqlite"})})
    records = [{"workload_id": "news_topic", "client_id": "desk-1", "timestamp": 1_760_000_000 + i,
                "request": {"model": "t", "messages": [{"role": "user", "content": f"outage headline {i}"}]},
                "response": {"choices": [{"index": 0, "message": {"role": "assistant", "content": "[[[Macro]]]"}}]}}
               for i in range(12)]
    with embedded_worker(settings, JobStore(settings.job_store.url)) as worker_app:
        logger = TrafficLogger(worker_app, settings.gateway.spool_path, batch_size=5, flush_interval_s=0.1).start()
        for r in records:
            logger.log(r)
        time.sleep(3)  # the ingest tasks fail and are retried meanwhile
        blocker.unlink()  # the store comes back
        found = stored(settings, "news_topic", 12, timeout=90)
        logger.close()
    assert len(found) == 12 and len({r.id for r in found}) == 12
