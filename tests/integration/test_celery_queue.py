"""Risky part proven early: a Celery chord runs through our app factory over the embedded
SQLite broker (kombu's SQLAlchemy transport) and over the local Redis, with an in-process worker."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from celery import Celery, chain, chord
from celery.contrib.testing.worker import start_worker

from services.domain.queue import make_celery_app
from services.domain.settings import QueueSettings

REDIS_URL = os.environ.get("FLYWHEEL_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _register(app: Celery) -> tuple:  # type: ignore[type-arg]
    # shared=False: a shared task (Celery's default) joins every app finalized later in this process, so each
    # test's apps (and the next _register) met these callables again under the same names.
    @app.task(name="flywheel.test.square", acks_late=True, shared=False)
    def square(x: int) -> int:
        return x * x

    @app.task(name="flywheel.test.total", shared=False)
    def total(values: list[int]) -> int:
        return sum(values)

    @app.task(name="flywheel.test.describe", shared=False)
    def describe(value: int) -> str:
        return f"sum of squares = {value}"

    return square, total, describe


def _run_chord(app: Celery) -> tuple[str, float]:
    square, total, describe = _register(app)
    with start_worker(app, pool="threads", concurrency=2, perform_ping_check=False, shutdown_timeout=30,
                      queues=["datastore", "evaluator"]):
        started = time.perf_counter()
        # chain(chord(group) -> callback) -> next step, on two service queues: the shape of a job.
        workflow = chain(
            chord([square.s(i).set(queue="evaluator") for i in range(6)], total.s().set(queue="datastore")),
            describe.s().set(queue="datastore"),
        )
        result = workflow.apply_async().get(timeout=90)
        return result, time.perf_counter() - started


def test_chord_over_the_embedded_sqlite_broker(tmp_path: Path) -> None:
    settings = QueueSettings(backend="embedded", embedded_dir=tmp_path / "queue", polling_interval_s=0.05)
    app = make_celery_app(settings, name="flywheel-test-embedded")
    result, seconds = _run_chord(app)
    assert result == "sum of squares = 55"
    assert (tmp_path / "queue" / "broker.sqlite").exists()
    print(f"embedded chord round trip: {seconds:.2f} s")


@pytest.mark.redis
def test_chord_over_redis() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
    client.flushdb()
    app = make_celery_app(QueueSettings(backend="redis", broker_url=REDIS_URL), name="flywheel-test-redis")
    result, seconds = _run_chord(app)
    assert result == "sum of squares = 55"
    print(f"redis chord round trip: {seconds:.2f} s")
    client.flushdb()
