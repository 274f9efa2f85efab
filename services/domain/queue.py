"""The Celery app factory: one place that turns `queue` settings into a configured Celery app.

embedded: kombu's SQLAlchemy transport on a SQLite file as broker and a SQLite result backend,
so a laptop needs no server. redis: a Redis broker (and result backend unless set apart).
Each queue (datastore, customizer, evaluator, deployment, and orchestrator for the decision) is declared here so that the
orchestrator can enqueue tasks by name without importing any worker.
"""

from __future__ import annotations

from pathlib import Path

from celery import Celery
from kombu.entity import Queue

from services.domain.errors import ConfigError
from services.domain.settings import QueueSettings

SERVICE_QUEUES = ("datastore", "customizer", "evaluator", "deployment", "orchestrator")


def broker_urls(settings: QueueSettings) -> tuple[str, str]:
    """(broker URL, result backend URL) for the configured backend."""
    if settings.backend == "embedded":
        root = Path(settings.embedded_dir)
        root.mkdir(parents=True, exist_ok=True)
        return f"sqla+sqlite:///{root / 'broker.sqlite'}", f"db+sqlite:///{root / 'results.sqlite'}"
    if settings.broker_url is None:
        raise ConfigError("queue.broker_url is required when queue.backend is 'redis'")
    return settings.broker_url, settings.result_backend or settings.broker_url


def make_celery_app(settings: QueueSettings, *, name: str = "flywheel") -> Celery:
    broker, backend = broker_urls(settings)
    app = Celery(name, broker=broker, backend=backend, set_as_current=False)
    app.conf.update(
        task_queues=[Queue(q) for q in SERVICE_QUEUES],
        task_default_queue="orchestrator",
        # Chords poll for their header on non-Redis result backends: keep that off the GPU queues.
        task_routes={"celery.chord_unlock": {"queue": "orchestrator"}},
        task_acks_late=True,  # tasks are idempotent; a worker crash re-delivers instead of losing work
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # long GPU tasks must not be hoarded by one worker
        task_time_limit=settings.task_time_limit_s,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_extended=True,
        # Polling interval of the SQL transport: a broker setting, not a transport option
        # (the transport option is ignored; the default of 1 s makes every hop slow).
        broker_polling_interval=settings.polling_interval_s,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    if settings.backend == "redis":  # the SQL transport passes its options to create_engine: Redis only
        # kombu sweeps for overdue unacknowledged tasks every interval x throttle seconds (10 x 10 by
        # default): throttle 1 re-delivers a killed worker's task within 10 s of its visibility timeout,
        # not 100 s (one small sorted-set read a sweep).
        app.conf.broker_transport_options = {"visibility_timeout": settings.visibility_timeout_s,
                                             "unacked_restore_throttle": 1}
    return app
