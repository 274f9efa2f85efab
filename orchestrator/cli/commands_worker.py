"""`flywheel worker QUEUE`: run one service's Celery worker on its own queue."""

from __future__ import annotations

import click

from orchestrator.cli.output import CliState, handles_errors
from orchestrator.pipeline.workers import ALL_QUEUES, WORKER_MODULES, registered_app


@click.command("worker")
@click.argument("queues", nargs=-1, required=True, type=click.Choice([*WORKER_MODULES, "all"]))
@click.option("--concurrency", type=int, default=1, show_default=True,
              help="Tasks at once. On the customizer queue this bounds GPU work (one per GPU).")
@click.option("--pool", type=click.Choice(["prefork", "threads", "solo"]), default=None,
              help="Celery pool. Default: threads on the embedded broker, prefork on Redis.")
@handles_errors
@click.pass_obj
def worker_command(state: CliState, queues: tuple[str, ...], concurrency: int, pool: str | None) -> None:
    """Consume tasks from QUEUES (datastore, customizer, evaluator, orchestrator), or `all` of them.

    The orchestrator enqueues tasks by name; each service scales and is placed on its own
    (customizer workers on GPU nodes; the orchestrator queue holds the light decision step).
    Tasks are idempotent and acknowledged late, so a worker killed mid-task has the task
    re-delivered (on Redis after queue.visibility_timeout_s), and training resumes from its last
    checkpoint. `all` serves every queue from one process (a laptop, the embedded broker).
    """
    settings = state.settings
    chosen = list(ALL_QUEUES) if "all" in queues else list(dict.fromkeys(queues))
    app = registered_app(settings, chosen)
    pool = pool or ("threads" if settings.queue.backend == "embedded" else "prefork")
    click.echo(f"worker for {', '.join(chosen)} on the {settings.queue.backend} broker ({pool}, concurrency "
               f"{concurrency})", err=True)
    app.Worker(queues=chosen, concurrency=concurrency, pool=pool, loglevel="INFO").start()
