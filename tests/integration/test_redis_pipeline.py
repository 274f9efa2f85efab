"""Jobs over Redis with real worker processes (`flywheel worker ...`), on a Redis server this test
starts on its own port (never the shared one): a job end to end, a customizer worker SIGKILLed
mid-training whose task is re-delivered and resumes from its checkpoint, and a Redis restart while
a job is queued (append-only file on, as in production) that the job survives."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.jobs.service import JobService
from orchestrator.jobs.store import JobStore
from orchestrator.jobs.view import job_view
from services.domain.queue import make_celery_app
from services.domain.settings import Settings
from tests.model_plane import model_plane

pytestmark = [pytest.mark.redis, pytest.mark.skipif(shutil.which("redis-server") is None,
                                                     reason="redis-server is not installed")]
FLYWHEEL = str(Path(sys.executable).parent / "flywheel")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    def __init__(self, root: Path) -> None:
        self.root, self.port, self.process = root, free_port(), None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.root),
             "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True).stdout.strip() == "PONG":
                return
            time.sleep(0.1)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def redis_plane(tmp_path: Path, server: RedisServer, **training: Any) -> tuple[Settings, Path]:
    plane = model_plane(tmp_path, records=120, **training)
    settings = Settings.model_validate({**plane.settings.model_dump(), "queue": {
        "backend": "redis", "broker_url": server.url, "visibility_timeout_s": 30}})
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(settings.model_dump(mode="json", exclude={"workloads"})))
    return settings, config


class Workers:
    """`flywheel worker` processes; their logs stay in the test's directory for a failure report."""

    def __init__(self, config: Path, root: Path) -> None:
        self.config, self.root, self.processes = config, root, {}

    def start(self, name: str, *queues: str, pool: str = "solo") -> subprocess.Popen:
        log = (self.root / f"worker-{name}-{len(self.processes)}.log").open("ab")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
        process = subprocess.Popen([FLYWHEEL, "--config", str(self.config), "worker", *queues, "--pool", pool],
                                   stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.root)
        self.processes[name] = process
        return process

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.root.glob("worker-*.log")))


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[Workers]]:
    started: list[Workers] = []
    yield started
    for w in started:
        w.stop()


def wait_for(store: JobStore, job_id: str, predicate: Any, timeout: float, workers: Workers) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = job_view(store.get_job(job_id))
        if predicate(view):
            return view
        time.sleep(0.3)
    raise AssertionError(f"timed out; job: {view['status']} {[(s['name'], s['status'], s['detail']) for s in view['stages']]}\n"
                         f"{workers.logs()}")


def finished(view: dict[str, Any]) -> bool:
    return view["status"] in ("failed", "cancelled") or (view["status"] == "completed" and view["decision"] is not None)


def test_job_over_redis_survives_a_sigkilled_customizer(tmp_path: Path, redis_server: RedisServer, workers: list) -> None:
    settings, config = redis_plane(tmp_path, redis_server, epochs=100, max_steps=400, checkpoint_every_steps=20,
                                   early_stopping_patience=0)
    pool = Workers(config, tmp_path)
    workers.append(pool)
    pool.start("light", "datastore", "evaluator", "orchestrator", pool="threads")
    trainer = pool.start("customizer", "customizer")
    store = JobStore(settings.job_store.url)
    service = JobService(settings, store, make_celery_app(settings.queue, name="test-api"))
    job = service.create(workload_id="news_topic", client_id=None, overrides={"candidates": ["tiny-lora"]})

    def past_a_checkpoint(view: dict[str, Any]) -> bool:
        customize = next(s for s in view["stages"] if s["name"] == "customize")
        return customize["status"] == "running" and (customize["detail"].get("step") or 0) >= 45

    wait_for(store, job.id, past_a_checkpoint, 180, pool)
    trainer.send_signal(signal.SIGKILL)
    trainer.wait(10)
    pool.start("customizer-2", "customizer")
    view = wait_for(store, job.id, finished, 300, pool)
    assert view["status"] == "completed", pool.logs()
    training = view["candidates"][0]["training"]
    assert training["metrics"]["steps"] == 400
    assert (training["metrics"]["resumed_from_step"] or 0) >= 20, "the re-delivered task resumed from a checkpoint"
    assert view["candidates"][0]["evaluations"]["customized"]["f1_vs_teacher"] is not None
    assert view["decision"]["verdicts"][0]["candidate"] == "tiny-lora"


def test_a_queued_job_survives_a_redis_restart(tmp_path: Path, redis_server: RedisServer, workers: list) -> None:
    settings, config = redis_plane(tmp_path, redis_server, max_steps=2)
    store = JobStore(settings.job_store.url)
    service = JobService(settings, store, make_celery_app(settings.queue, name="test-api"))
    job = service.create(workload_id="news_topic", client_id=None, overrides={"candidates": ["tiny-clf"]})
    redis_server.stop()  # no worker has seen the job yet; the broker restarts from its append-only file
    redis_server.start()
    pool = Workers(config, tmp_path)
    workers.append(pool)
    pool.start("all", "all", pool="threads")
    view = wait_for(store, job.id, finished, 240, pool)
    assert view["status"] == "completed", pool.logs()
    assert view["candidates"][0]["training"]["metrics"]["steps"] == 2
