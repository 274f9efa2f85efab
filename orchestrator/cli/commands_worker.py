"""`flywheel worker QUEUE`: run one service's Celery worker on its own queue."""

from __future__ import annotations

import importlib

import click

from orchestrator.cli.output import CliState, handles_errors
from services.domain.queue import SERVICE_QUEUES

WORKER_MODULES = {
    "datastore": "services.datastore.worker",
    "customizer": "services.customizer.worker",
    "evaluator": "services.evaluator.worker",
}


def registered_app(settings, queues: list[str]):  # type: ignore[no-untyped-def]
    """A Celery app with the tasks of `queues` registered (imports those workers only)."""
    from services.domain.queue import make_celery_app

    app = make_celery_app(settings.queue, name="flywheel-worker")
    for queue in queues:
        importlib.import_module(WORKER_MODULES[queue]).register(app, settings)
    return app


@click.command("worker")
@click.argument("queue", type=click.Choice([q for q in SERVICE_QUEUES if q in WORKER_MODULES]))
@click.option("--concurrency", type=int, default=1, show_default=True,
              help="Tasks at once. On the customizer queue this bounds GPU work (one per GPU).")
@click.option("--pool", type=click.Choice(["prefork", "threads", "solo"]), default=None,
              help="Celery pool. Default: solo on the embedded broker, prefork on Redis.")
@handles_errors
@click.pass_obj
def worker_command(state: CliState, queue: str, concurrency: int, pool: str | None) -> None:
    """Consume tasks from one service queue (datastore, customizer, evaluator).

    The orchestrator enqueues tasks by name; each service scales and is placed on its own
    (customizer workers on GPU nodes). Tasks are idempotent and acknowledged late, so a worker
    killed mid-task has the task re-delivered, and training resumes from its last checkpoint.
    """
    settings = state.settings
    app = registered_app(settings, [queue])
    pool = pool or ("solo" if settings.queue.backend == "embedded" else "prefork")
    click.echo(f"worker for queue {queue!r} on {settings.queue.backend} broker ({pool}, concurrency {concurrency})",
               err=True)
    app.Worker(queues=[queue], concurrency=concurrency, pool=pool, loglevel="INFO").start()
