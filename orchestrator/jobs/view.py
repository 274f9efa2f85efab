"""The public shape of a job (`GET /api/jobs/{id}`, `flywheel jobs show --json`), built from its rows.

One place decides what a user sees: every stage with status, progress, timestamps and error; the
dataset with its split counts; per candidate its evaluations (base, icl, customized, each with
`f1_vs_teacher` / `score_vs_teacher` and its CI, latency and size), its training progress and
artifact; the failed candidates with reasons; and the decision.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from orchestrator.jobs.models import Event, Job, Stage
from services.domain.jobs import JobStatus
from services.domain.jobs import Stage as StageName

EVAL_OF_STAGE = {StageName.BASE_EVAL.value: "base", StageName.ICL_EVAL.value: "icl",
                 StageName.CUSTOMIZED_EVAL.value: "customized"}


def _ts(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def stage_view(stage: Stage) -> dict[str, Any]:
    return {"name": stage.name, "candidate": stage.candidate, "status": stage.status,
            "progress": round(stage.progress, 4), "detail": stage.detail or {}, "error": stage.error,
            "started_at": _ts(stage.started_at), "finished_at": _ts(stage.finished_at)}


def job_summary(job: Job) -> dict[str, Any]:
    """The short form (lists): no per-stage detail."""
    return {"id": job.id, "workload_id": job.workload_id, "client_id": job.client_id, "status": job.status,
            "created_at": _ts(job.created_at), "updated_at": _ts(job.updated_at),
            "finished_at": _ts(job.finished_at), "error": job.error, "dataset_id": job.dataset_id,
            "progress": job_progress(job), "chosen": job.decision.chosen if job.decision else None,
            "cancel_requested": job.cancel_requested}


def job_progress(job: Job) -> float:
    if not job.stages:
        return 1.0 if JobStatus(job.status).finished else 0.0
    return round(sum(1.0 if JobStatus(s.status).finished else s.progress for s in job.stages) / len(job.stages), 4)


def job_view(job: Job) -> dict[str, Any]:
    """The full form."""
    build = next((s for s in job.stages if s.name == StageName.BUILD_DATASET.value), None)
    dataset = None
    if build is not None and build.result:
        dataset = {k: build.result.get(k) for k in ("dataset_id", "workload_type", "counts", "labels", "teacher_usage")}
    candidates: dict[str, dict[str, Any]] = {}
    failed: list[dict[str, Any]] = []
    for stage in job.stages:
        if stage.candidate is None:
            continue
        entry = candidates.setdefault(stage.candidate, {
            "name": stage.candidate, "status": JobStatus.QUEUED.value,
            "evaluations": {"base": None, "icl": None, "customized": None}, "training": None})
        if stage.name in EVAL_OF_STAGE:
            kind = EVAL_OF_STAGE[stage.name]
            public = (stage.result or {}).get("public")
            entry["evaluations"][kind] = public if public is not None else {
                "status": stage.status, "error": stage.error, "progress": round(stage.progress, 4)}
        elif stage.name == StageName.CUSTOMIZE.value:
            result = stage.result or {}
            entry["training"] = {
                "status": stage.status, "progress": round(stage.progress, 4), "live": stage.detail or {},
                "artifact_id": result.get("artifact_id"), "path": result.get("path"),
                "size_bytes": result.get("size_bytes"), "metrics": result.get("metrics"), "error": stage.error}
        if stage.status == JobStatus.FAILED.value:
            failed.append({"candidate": stage.candidate, "stage": stage.name, "error": stage.error})
    for name, entry in candidates.items():
        rows = [s for s in job.stages if s.candidate == name]
        entry["status"] = _rollup([JobStatus(s.status) for s in rows])
    return {
        **job_summary(job),
        "overrides": job.overrides or {},
        "stages": [stage_view(s) for s in job.stages],
        "dataset": dataset,
        "candidates": list(candidates.values()),
        "failed_candidates": failed,
        "decision": job.decision.model_dump(mode="json") if job.decision else None,
    }


def _rollup(statuses: list[JobStatus]) -> str:
    if any(s is JobStatus.FAILED for s in statuses):
        return JobStatus.FAILED.value
    if all(s is JobStatus.COMPLETED for s in statuses):
        return JobStatus.COMPLETED.value
    if all(s.finished for s in statuses):
        return JobStatus.CANCELLED.value
    if any(s is not JobStatus.QUEUED for s in statuses):
        return JobStatus.RUNNING.value
    return JobStatus.QUEUED.value


def event_view(event: Event) -> dict[str, Any]:
    return {"id": event.id, "kind": event.kind, "at": _ts(event.at), "actor": event.actor, "job_id": event.job_id,
            "workload_id": event.workload_id, "client_id": event.client_id, "detail": event.detail or {}}
