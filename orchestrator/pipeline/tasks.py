"""The orchestrator's own tasks (queue `orchestrator`): decide at the end of a job, and mark a
job failed when its canvas breaks. Light: no torch, no worker imports; they read the stage
results the service workers recorded in the job store and call the pure `decide`.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery

from orchestrator.decision import TeacherUsage, decide
from orchestrator.jobs.models import Job
from orchestrator.jobs.store import JobStore
from orchestrator.jobs.view import job_view
from orchestrator.pipeline.canvas import send_deploy, skipped_candidates
from orchestrator.tracking import track_job
from services.domain.evaluation import EvalResult
from services.domain.jobs import JobOverrides, JobStatus, Stage
from services.domain.settings import Settings
from services.domain.tasks import (
    DECIDE,
    DRIFT_CHECK,
    JOB_FAILED,
    QUEUE_OF,
    SCHEDULED_RUN,
    DecidePayload,
    WorkloadPayload,
)

log = logging.getLogger(__name__)

# A candidate whose training or customized evaluation failed cannot be promoted; base/ICL failures
# are listed on the job but do not disqualify the trained student.
DISQUALIFYING = (Stage.CUSTOMIZE.value, Stage.CUSTOMIZED_EVAL.value)


def register(app: Celery, settings: Settings, store: JobStore) -> None:
    @app.task(name=DECIDE, queue=QUEUE_OF[DECIDE], acks_late=True, shared=False, bind=True)
    def decide_task(self: Any, _header: Any = None, *, payload: dict[str, Any]) -> dict[str, Any]:
        """Apply the workload's promotion policy; hand a chosen student to the deployment manager; track the job."""
        job_id = DecidePayload.model_validate(payload).job_id
        outcome = finish_job(store, settings, job_id)
        # Tracked before deploying: the deployer moves the aliases of the version registered here.
        job = store.get_job(job_id)
        view = job_view(job)
        if outcome.get("deploy"):  # decided; the run records the decision, the deploy stage finishes the job
            view = {**view, "status": JobStatus.COMPLETED.value}
        run_id = track_job(settings, view, decision=job.decision)  # never raises; logs why it failed
        if run_id is not None:
            store.set_stage(job_id, Stage.DECIDE.value, detail={"mlflow_run_id": run_id})
        if outcome.get("deploy") and job.decision is not None:
            send_deploy(self.app, job_id, job.decision)
        return {**outcome, "mlflow_run_id": run_id}

    @app.task(name=SCHEDULED_RUN, queue=QUEUE_OF[SCHEDULED_RUN], shared=False, bind=True)
    def scheduled_run_task(self: Any, *, payload: dict[str, Any]) -> dict[str, Any]:
        """A cron tick (Celery beat): start a job when enough new records arrived, else record why not."""
        from orchestrator.jobs.service import JobService
        from orchestrator.schedules import scheduled_run

        workload_id = WorkloadPayload.model_validate(payload).workload_id
        return scheduled_run(settings, store, JobService(settings, store, self.app), workload_id)

    @app.task(name=DRIFT_CHECK, queue=QUEUE_OF[DRIFT_CHECK], shared=False, bind=True)
    def drift_check_task(self: Any, *, payload: dict[str, Any]) -> dict[str, Any]:
        """Compare recent teacher labels with the last dataset; start a job past the drift thresholds."""
        from orchestrator.jobs.service import JobService
        from orchestrator.schedules import drift_check

        workload_id = WorkloadPayload.model_validate(payload).workload_id
        return drift_check(settings, store, JobService(settings, store, self.app), workload_id)

    @app.task(name=JOB_FAILED, queue=QUEUE_OF[JOB_FAILED], shared=False)
    def job_failed_task(*args: Any, job_id: str | None = None) -> None:
        """Error callback of a job's canvas: the chord broke (a task killed by its time limit, a lost result)."""
        job_id = job_id or next((a for a in args if isinstance(a, str)), None)
        error = next((f"{type(a).__name__}: {a}" for a in args if isinstance(a, BaseException)), "the job's canvas failed")
        if job_id:
            store.set_stage(job_id, Stage.DECIDE.value, status=JobStatus.FAILED, error=error)
            store.set_job(job_id, status=JobStatus.FAILED, error=error)
            job = store.get_job(job_id)
            track_job(settings, job_view(job), decision=job.decision)


def finish_job(store: JobStore, settings: Settings, job_id: str) -> dict[str, Any]:
    job = store.get_job(job_id)
    decide_stage = Stage.DECIDE.value
    if job.cancel_requested or job.status == JobStatus.CANCELLED.value:
        store.set_stage(job_id, decide_stage, status=JobStatus.CANCELLED, error="job cancelled")
        store.set_job(job_id, status=JobStatus.CANCELLED)
        return {"ok": False, "cancelled": True}
    store.set_stage(job_id, decide_stage, status=JobStatus.RUNNING)
    build = next((s for s in job.stages if s.name == Stage.BUILD_DATASET.value), None)
    if build is None or build.status != JobStatus.COMPLETED.value or not build.result:
        failure = f"build_dataset failed: {build.error if build else 'never ran'}"
        store.set_stage(job_id, decide_stage, status=JobStatus.CANCELLED, error=f"not run: {failure}")
        store.set_job(job_id, status=JobStatus.FAILED, error=failure)
        return {"ok": False, "error": failure}
    results, failed, unfit = candidate_outcomes(job)
    skipped = {**skipped_candidates(settings, JobOverrides.model_validate(job.overrides or {})), **unfit}
    usage = build.result.get("teacher_usage")
    decision = decide(job.workload_id, results, settings.promotion_policy(job.workload_id), settings.pricing,
                      teacher_usage=TeacherUsage(**usage) if usage else None, failed=failed, skipped=skipped,
                      notes=training_notes(job))
    store.set_stage(job_id, decide_stage, status=JobStatus.COMPLETED,
                    result={"chosen": decision.chosen, "reason": decision.reason})
    deploying = decision.deploys  # chosen, no approval needed: the deploy stage completes the job
    # A job tells the truth: no candidate trained and evaluated is a failure, not a green "keep the teacher";
    # some failing is said in the job's error while the job still completes with the others' decision.
    error: str | None = None
    if failed:
        error = "; ".join(f"{name}: {why}" for name, why in sorted(failed.items()))
        error = (f"no candidate was trained and evaluated: {error}" if not results
                 else f"{len(failed)} of {len(failed) + len(results)} candidates failed: {error}")
    elif not results:
        error = "no candidate was trained and evaluated" + (
            f" ({len(skipped)} skipped: {', '.join(sorted(skipped))})" if skipped else "")
    status = JobStatus.FAILED if not results else (None if deploying else JobStatus.COMPLETED)
    store.set_job(job_id, status=status, decision=decision, dataset_id=build.result["dataset_id"], error=error)
    log.info("job %s: %s", job_id, decision.reason)
    return {"ok": True, "chosen": decision.chosen, "deploy": deploying}


def training_notes(job: Job) -> list[str]:
    """What the decision should say about how candidates were trained: examples cut at max_seq_length."""
    notes = []
    for stage in job.stages:
        metrics = (stage.result or {}).get("metrics") or {} if stage.name == Stage.CUSTOMIZE.value else {}
        cut, examples = metrics.get("truncated_examples"), metrics.get("train_examples")
        if cut:
            notes.append(f"{stage.candidate}: {cut} training examples (of {examples} train) were cut at max_seq_length "
                         f"{metrics.get('max_seq_length')}, from the start of the prompt: the student saw them "
                         "incomplete (leave training.max_seq_length unset to size it from the data)")
    return notes


UNFIT = "cannot learn a"  # the customizer's words for a candidate whose kind does not fit the workload's type


def candidate_outcomes(job: Job) -> tuple[list[EvalResult], dict[str, str], dict[str, str]]:
    """Customized evaluations that completed, the candidates that failed (with the stage and reason), and those
    left out because their kind cannot learn the workload's type (not a failure: the decision says why)."""
    results: list[EvalResult] = []
    failed: dict[str, str] = {}
    unfit: dict[str, str] = {}
    for stage in job.stages:
        if stage.candidate is None:
            continue
        stopped = stage.status in (JobStatus.FAILED.value, JobStatus.CANCELLED.value)
        if stage.name in DISQUALIFYING and stopped and UNFIT in (stage.error or ""):
            unfit.setdefault(stage.candidate, (stage.error or "").removeprefix("ConfigError: "))
        elif stage.name in DISQUALIFYING and stage.status == JobStatus.FAILED.value:
            failed.setdefault(stage.candidate, f"{stage.name}: {stage.error}")
        if (stage.name == Stage.CUSTOMIZED_EVAL.value and stage.status == JobStatus.COMPLETED.value
                and stage.result and "result" in stage.result):
            results.append(EvalResult.model_validate(stage.result["result"]))
    for name in unfit:
        failed.pop(name, None)
    return results, failed, unfit
