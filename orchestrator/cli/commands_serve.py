"""`flywheel serve ...`: the long-running servers (the REST API, the OpenAI-compatible gateway, a replay teacher)."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

import click

from orchestrator.cli.output import CliState, handles_errors


@click.group("serve", help="Run a server: the orchestrator API, the OpenAI-compatible gateway, or a replay teacher.")
def serve_group() -> None:
    pass


@serve_group.command("api")
@click.option("--host", default=None, help="Default: api.host from config.")
@click.option("--port", type=int, default=None, help="Default: api.port from config.")
@click.option("--no-worker", is_flag=True, help="Embedded queue: do not run the in-process worker.")
@handles_errors
@click.pass_obj
def serve_api_command(state: CliState, host: str | None, port: int | None, no_worker: bool) -> None:
    """Serve the REST API (OpenAPI docs at /docs).

    On the embedded queue it also runs a worker for every queue in this process (unless
    --no-worker), so a laptop needs one command; in production the workers are separate.
    """
    import uvicorn

    from orchestrator.api.app import create_app
    from orchestrator.jobs.store import JobStore

    settings = state.settings
    store = JobStore(settings.job_store.url)
    run_worker = settings.queue.backend == "embedded" and settings.api.embedded_worker and not no_worker
    if run_worker:
        from orchestrator.pipeline.embedded import embedded_worker

        context: Any = embedded_worker(settings, store)
    else:
        context = nullcontext(None)
    with context as worker_app:
        app = create_app(settings, store=store, celery_app=worker_app)
        click.echo(f"API on http://{host or settings.api.host}:{port or settings.api.port} (docs at /docs)"
                   + (", with an in-process worker" if run_worker else ""), err=True)
        uvicorn.run(app, host=host or settings.api.host, port=port or settings.api.port, log_level="info")


@serve_group.command("gateway")
@click.option("--host", default=None, help="Default: gateway.host from config.")
@click.option("--port", type=int, default=None, help="Default: gateway.port from config.")
@handles_errors
@click.pass_obj
def serve_gateway_command(state: CliState, host: str | None, port: int | None) -> None:
    """Serve the OpenAI-compatible gateway: point the teacher's clients here (base_url .../v1).

    Every call is answered by the workload's route (the teacher at teacher.base_url, or a promoted
    student in shadow/canary/full) and the teacher's answers are logged to the datastore
    through the queue; a datastore worker stores them (`flywheel worker datastore`, or the
    embedded worker of `flywheel serve api`). While the queue is down, calls spool to
    gateway.spool_path and are sent later.
    """
    from services.deployment.gateway.app import run_gateway

    settings = state.settings
    click.echo(f"gateway on http://{host or settings.gateway.host}:{port or settings.gateway.port}/v1 -> teacher "
               f"{settings.teacher.base_url}", err=True)
    run_gateway(settings, host=host, port=port)


@serve_group.command("replay-teacher")
@click.argument("logs", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8002, show_default=True)
@handles_errors
def serve_replay_teacher_command(logs: tuple[Path, ...], host: str, port: int) -> None:
    """Serve an OpenAI-compatible teacher stand-in that answers from recorded teacher LOGS (JSON Lines,
    plain or gzip): a request whose messages match a logged call gets that call's answer; any other
    gets a 404 `not_recorded` error. For demos and offline trials of the gateway where no real teacher
    can be reached (set teacher.base_url to http://HOST:PORT/v1). Its latency is a lookup, not an LLM's.
    """
    import uvicorn

    from services.deployment.gateway.replay_teacher import create_replay_teacher, load_recording

    answers, counts = load_recording(logs)
    click.echo(f"replay teacher on http://{host}:{port}/v1 with {counts['chat_calls']} recorded answers "
               f"({counts['skipped']} lines skipped)", err=True)
    uvicorn.run(create_replay_teacher(answers), host=host, port=port, log_level="warning")
