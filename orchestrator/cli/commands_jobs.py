"""`flywheel jobs ...`: the job operations of the REST API, from the shell.

The CLI talks to the same job store and queue as the API (no HTTP in between). On the embedded
broker `jobs create --wait` runs the job on an in-process worker and blocks; on Redis it enqueues
and follows the job while the service workers run it.
"""

from __future__ import annotations

import sys
import time
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

import click

from orchestrator.cli.commands_datasets import parse_assignments
from orchestrator.cli.output import EXIT_FAILED, EXIT_OK, CliState, emit, handles_errors, json_option
from services.domain.jobs import JobStatus

if TYPE_CHECKING:
    from services.domain.decisions import PromotionDecision

EXIT_CANCELLED = 2
EXIT_OF_STATUS = {JobStatus.COMPLETED: EXIT_OK, JobStatus.FAILED: EXIT_FAILED, JobStatus.CANCELLED: EXIT_CANCELLED}


def _store(state: CliState) -> Any:
    from orchestrator.jobs.store import JobStore

    return JobStore(state.settings.job_store.url)


def _service(state: CliState, store: Any, app: Any = None) -> Any:
    from orchestrator.jobs.service import JobService
    from services.domain.queue import make_celery_app

    return JobService(state.settings, store, app or make_celery_app(state.settings.queue, name="flywheel-cli"))


@click.group("jobs", help="Create, follow, list, cancel, approve and delete flywheel jobs.")
def jobs_group() -> None:
    pass


@jobs_group.command("create")
@click.option("--workload", "workload_id", required=True, help="Workload whose logs the job learns from.")
@click.option("--client", "client_id", default=None, help="Only this client's logs (default: every client).")
@click.option("--candidate", "candidates", multiple=True, help="Run only this candidate (repeatable).")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help="Override for this job: training.KEY (e.g. training.max_steps=50) or a data section key "
                   "(e.g. data_split.eval_size=300).")
@click.option("--wait", is_flag=True, help="Follow progress on stderr until the job finishes; print the job.")
@click.option("--timeout", type=float, default=None, help="With --wait: give up after this many seconds (exit 1).")
@json_option
@handles_errors
@click.pass_obj
def create_command(state: CliState, workload_id: str, client_id: str | None, candidates: tuple[str, ...],
                   assignments: tuple[str, ...], wait: bool, timeout: float | None, as_json: bool) -> None:
    """Create a job: build the dataset, evaluate and train every candidate, decide.

    With --wait it prints exactly the `GET /api/jobs/{id}` body and exits 0 (completed), 1
    (failed) or 2 (cancelled). On the embedded broker the job runs inside this command.
    """
    from orchestrator.jobs.view import job_view

    settings = state.settings
    overrides: dict[str, Any] = {}
    for key, value in parse_assignments(assignments).items():
        if key.startswith("training."):
            overrides.setdefault("training", {})[key.removeprefix("training.")] = value
        else:
            overrides.setdefault("data", {})[key] = value
    if candidates:
        overrides["candidates"] = list(candidates)
    store = _store(state)
    embedded = wait and settings.queue.backend == "embedded"
    if embedded:
        from orchestrator.pipeline.embedded import embedded_worker

        context: Any = embedded_worker(settings, store)
    else:
        context = nullcontext(None)
    with context as worker_app:
        job = _service(state, store, worker_app).create(workload_id=workload_id, client_id=client_id,
                                                        overrides=overrides, actor="cli")
        click.echo(f"job {job.id} queued ({len(job.stages)} stages)", err=True)
        if not wait:
            if settings.queue.backend == "embedded":
                click.echo("the embedded queue runs jobs inside `flywheel serve api` or `flywheel worker all`; "
                           "or use --wait to run it here", err=True)
            emit({"id": job.id, "status": job.status}, as_json=as_json, human=lambda: click.echo(job.id))
            return
        final = follow(store, job.id, timeout=timeout)
    view = job_view(final)
    emit(view, as_json=as_json, human=lambda: print_job(view, final.decision))
    sys.exit(EXIT_OF_STATUS.get(JobStatus(final.status), EXIT_FAILED))


def follow(store: Any, job_id: str, *, timeout: float | None, poll_s: float = 0.5) -> Any:
    """Poll the job, printing stage changes and training progress on stderr, until it finishes."""
    seen: dict[tuple[str, str | None], str] = {}
    shown: dict[tuple[str, str | None], Any] = {}  # the progress last printed per stage: once per change
    last_live = 0.0
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        job = store.get_job(job_id)
        for stage in job.stages:
            key = (stage.name, stage.candidate)
            if seen.get(key) != stage.status:
                seen[key] = stage.status
                if stage.status != JobStatus.QUEUED.value:
                    who = f" [{stage.candidate}]" if stage.candidate else ""
                    click.echo(f"  {stage.name}{who}: {stage.status}" + (f" - {stage.error}" if stage.error else ""),
                               err=True)
            live = stage.detail or {}
            done = live.get("step", live.get("requests_done"))
            if (stage.status == JobStatus.RUNNING.value and done is not None and time.monotonic() - last_live > 5
                    and shown.get(key) != done):
                last_live, shown[key] = time.monotonic(), done
                click.echo(f"    {stage.candidate}: {progress_line(live)}", err=True)
        if JobStatus(job.status).finished and (job.status != JobStatus.COMPLETED.value or job.decision is not None):
            return job
        if deadline is not None and time.monotonic() > deadline:
            from services.domain.errors import FlywheelError

            raise FlywheelError(f"job {job_id} is still {job.status} after {timeout} s (it goes on; "
                                f"`flywheel jobs show {job_id}`)")
        time.sleep(poll_s)


def progress_line(live: dict[str, Any]) -> str:
    """`step 120/400 (30%), 41.2 examples/s, loss 0.734, about 7 s left` (training) or `requests 40/200 (20%)`
    (an evaluation) from a stage's live detail."""
    if "requests_done" in live:
        done, total = live["requests_done"], live.get("requests")
        return f"requests {done}/{total}" + (f" ({100 * done / total:.0f}%)" if total else "")
    step, total = live.get("step"), live.get("max_steps")
    parts = [f"step {step}/{total}" + (f" ({100 * step / total:.0f}%)" if step is not None and total else "")]
    if live.get("examples_per_s") is not None:
        parts.append(f"{live['examples_per_s']:.1f} examples/s")
    if live.get("loss") is not None:
        parts.append(f"loss {live['loss']:.3f}")
    if live.get("eta_s") is not None:
        parts.append(f"about {live['eta_s']:.0f} s left")
    return ", ".join(parts)


def print_job(view: dict[str, Any], decision: PromotionDecision | None) -> None:
    click.echo(f"job {view['id']}  {view['workload_id']}  {view['status']}" +
               (f"  error: {view['error']}" if view.get("error") else ""))
    if view.get("dataset"):
        click.echo(f"  dataset {view['dataset']['dataset_id'][:16]}  {view['dataset']['counts']}")
    for candidate in view.get("candidates", []):
        parts = []
        for kind, result in candidate["evaluations"].items():
            if not result:
                continue
            if result.get("applicable") is False:
                parts.append(f"{kind} n/a")
                continue
            name = "f1_vs_teacher" if "f1_vs_teacher" in result else "score_vs_teacher"
            if result.get(name) is None:
                parts.append(f"{kind} {result.get('status', '-')}")
                continue
            ci = result.get(f"{name}_ci") or [None, None]
            parts.append(f"{kind} {result[name]:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci[0] is not None else ""))
        click.echo(f"  {candidate['name']:<22} {candidate['status']:<10} " + "  ".join(parts))
    for failed in view.get("failed_candidates", []):
        click.echo(f"  failed: {failed['candidate']} {failed['stage']}: {failed['error']}")
    if decision is not None:
        click.echo(f"  decision ({decision.status}): {decision.reason}")
        for verdict in decision.verdicts:
            mode = f" ({verdict.mode})" if verdict.qualified and verdict.mode else ""
            click.echo(f"    {'ok' if verdict.qualified else 'no'} {verdict.candidate}{mode}: "
                       + ("; ".join(verdict.reasons) or "qualifies"))
        for note in decision.notes:
            click.echo(f"    note: {note}")


@jobs_group.command("list")
@click.option("--workload", "workload_id", default=None)
@click.option("--status", type=click.Choice([s.value for s in JobStatus]), default=None)
@click.option("--limit", type=int, default=20, show_default=True)
@json_option
@handles_errors
@click.pass_obj
def list_command(state: CliState, workload_id: str | None, status: str | None, limit: int, as_json: bool) -> None:
    """Jobs, newest first."""
    from orchestrator.jobs.view import job_summary

    jobs, total = _store(state).list_jobs(workload_id=workload_id, status=status, limit=limit)
    rows = [job_summary(j) for j in jobs]

    def human() -> None:
        for row in rows:
            click.echo(f"{row['id']}  {row['workload_id']:<20} {row['status']:<10} {row['progress'] * 100:5.1f}%  "
                       f"{row['created_at'][:19]}  chosen: {row['chosen'] or '-'}")
        click.echo(f"{len(rows)} of {total} jobs", err=True)

    emit({"jobs": rows, "total": total}, as_json=as_json, human=human)


@jobs_group.command("show")
@click.argument("job_id")
@json_option
@handles_errors
@click.pass_obj
def show_command(state: CliState, job_id: str, as_json: bool) -> None:
    """A job: stages, dataset, candidates and their evaluations, the decision. JOB_ID may be a unique prefix."""
    from orchestrator.jobs.view import job_view

    job = _store(state).get_job(job_id)
    view = job_view(job)
    emit(view, as_json=as_json, human=lambda: print_job(view, job.decision))


@jobs_group.command("cancel")
@click.argument("job_id")
@json_option
@handles_errors
@click.pass_obj
def cancel_command(state: CliState, job_id: str, as_json: bool) -> None:
    """Cancel: queued work never starts; training stops at its next step."""
    from orchestrator.jobs.view import job_summary

    store = _store(state)
    job_id = store.get_job(job_id).id  # a unique prefix (the short id the dashboard shows) names the job
    row = job_summary(_service(state, store).cancel(job_id, actor="cli"))
    emit(row, as_json=as_json, human=lambda: click.echo(f"job {job_id}: {row['status']} (cancel requested)"))


@jobs_group.command("approve")
@click.argument("job_id")
@json_option
@handles_errors
@click.pass_obj
def approve_command(state: CliState, job_id: str, as_json: bool) -> None:
    """Approve a decision awaiting approval (promotion.require_approval)."""
    from orchestrator.jobs.view import job_view

    store = _store(state)
    job_id = store.get_job(job_id).id
    job = _service(state, store).approve(job_id, actor="cli")
    view = job_view(job)
    emit(view, as_json=as_json, human=lambda: click.echo(f"job {job_id}: {job.decision.status if job.decision else '-'}"))


@jobs_group.command("delete")
@click.argument("job_id")
@json_option
@handles_errors
@click.pass_obj
def delete_command(state: CliState, job_id: str, as_json: bool) -> None:
    """Delete a finished job and the artifacts, evaluations and dataset only it used."""
    store = _store(state)
    job_id = store.get_job(job_id).id
    report = _service(state, store).delete(job_id, actor="cli")
    emit(report, as_json=as_json, human=lambda: click.echo(
        f"deleted job {job_id}: {len(report['artifacts'])} artifacts, {len(report['evaluations'])} evaluations, "
        f"{len(report['datasets'])} datasets"))
