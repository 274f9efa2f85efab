"""The embedded default's in-process worker: every queue served by threads of this process, over
the SQLite broker, so `flywheel jobs create --wait` and `make demo` need no server.

Built on celery.contrib.testing's `start_worker`, which runs a real WorkController on a thread
and stops it cleanly on exit (the same machinery as `flywheel worker all`, without a new process).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery.contrib.testing.worker import start_worker

from orchestrator.jobs.store import JobStore
from orchestrator.pipeline.workers import ALL_QUEUES, registered_app
from services.domain.settings import Settings


@contextmanager
def embedded_worker(settings: Settings, store: JobStore, *, concurrency: int | None = None) -> Iterator[Any]:
    """Yield a Celery app whose tasks run on an in-process worker until the block exits."""
    app = registered_app(settings, ALL_QUEUES, store=store)
    with start_worker(app, pool="threads", concurrency=concurrency or settings.queue.embedded_concurrency,
                      perform_ping_check=False, queues=list(ALL_QUEUES), shutdown_timeout=60, loglevel="WARNING"):
        yield app
