"""`flywheel schedule ...` and `flywheel beat`: scheduled runs, the drift trigger, and the one beat process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from orchestrator.cli.output import CliState, emit, handles_errors, json_option


@click.group("schedule", help="Scheduled runs (cron per workload) and the drift trigger.")
def schedule_group() -> None:
    pass


@schedule_group.command("list")
@click.option("--events", "limit", type=int, default=10, show_default=True, help="Recent events to show.")
@json_option
@handles_errors
@click.pass_obj
def list_command(state: CliState, limit: int, as_json: bool) -> None:
    """Next run of every schedule and drift check, and the recent schedule events (started, skipped, drift)."""
    from orchestrator.jobs.store import JobStore
    from orchestrator.jobs.view import event_view
    from orchestrator.schedules import next_runs

    settings = state.settings
    store = JobStore(settings.job_store.url)
    events = [event_view(e) for kind in ("schedule.started", "schedule.skipped", "drift.triggered")
              for e in store.events(kind=kind, limit=limit)]
    events = sorted(events, key=lambda e: (e["at"], e["id"]), reverse=True)[:limit]
    payload = {"schedules": next_runs(settings), "events": events}

    def human() -> None:
        if not payload["schedules"]:
            click.echo("no schedules: set workloads.<id>.schedule.cron (or .drift.enabled) in config.yaml")
        for row in payload["schedules"]:
            click.echo(f"{row['workload_id']:<24} {row['kind']:<6} {row['cron']:<16} next {row['next_run']}")
        for event in events:
            detail = event["detail"].get("reason") or "; ".join(event["detail"].get("reasons", [])) or event["job_id"]
            click.echo(f"  {event['at'][:19]}  {event['kind']:<17} {event['workload_id']}: {detail}")

    emit(payload, as_json=as_json, human=human)


def _run(state: CliState, workload_id: str, which: str, as_json: bool) -> None:
    from orchestrator.jobs.service import JobService
    from orchestrator.jobs.store import JobStore
    from orchestrator.schedules import drift_check, scheduled_run
    from services.domain.queue import make_celery_app

    settings = state.settings
    store = JobStore(settings.job_store.url)
    service = JobService(settings, store, make_celery_app(settings.queue, name="flywheel-cli"))
    outcome = (scheduled_run if which == "run" else drift_check)(settings, store, service, workload_id)
    emit(outcome, as_json=as_json, human=lambda: click.echo(
        f"started job {outcome['job_id']}" if outcome["started"] else outcome["reason"]))


@schedule_group.command("run")
@click.argument("workload_id")
@json_option
@handles_errors
@click.pass_obj
def run_command(state: CliState, workload_id: str, as_json: bool) -> None:
    """Do one scheduled tick now: start a job if enough new records arrived since the last one."""
    _run(state, workload_id, "run", as_json)


@schedule_group.command("drift")
@click.argument("workload_id")
@json_option
@handles_errors
@click.pass_obj
def drift_command(state: CliState, workload_id: str, as_json: bool) -> None:
    """Check label drift now: start a job if recent answers moved past the thresholds."""
    _run(state, workload_id, "drift", as_json)


@click.command("beat")
@click.option("--schedule-file", type=click.Path(dir_okay=False, path_type=Path), default=Path("var/celerybeat-schedule"),
              show_default=True, help="Where beat remembers the last run of each entry.")
@handles_errors
@click.pass_obj
def beat_command(state: CliState, schedule_file: Path) -> None:
    """Run Celery beat: THE single source of scheduled runs and drift checks (run exactly one).

    It only sends tasks (to the orchestrator queue); a worker for that queue runs them.
    """
    from orchestrator.schedules import beat_schedule
    from services.domain.queue import make_celery_app
    from services.domain.tasks import DRIFT_CHECK, SCHEDULED_RUN

    settings = state.settings
    app: Any = make_celery_app(settings.queue, name="flywheel-beat")
    app.conf.beat_schedule = beat_schedule(settings, (SCHEDULED_RUN, DRIFT_CHECK))
    app.conf.timezone = "UTC"
    schedule_file.parent.mkdir(parents=True, exist_ok=True)
    click.echo(f"beat with {len(app.conf.beat_schedule)} entries: {', '.join(app.conf.beat_schedule) or 'none'}",
               err=True)
    app.Beat(schedule=str(schedule_file), loglevel="INFO").run()
