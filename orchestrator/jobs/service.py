"""Job operations shared by the REST API and the CLI: create (validate, plan, enqueue), cancel,
approve, delete (with cleanup). The queue is reached through a Celery app with no tasks
registered: every task is sent by name.
"""

from __future__ import annotations

import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from celery import Celery
from pydantic import ValidationError

from orchestrator.jobs.models import Job
from orchestrator.jobs.store import JobStore
from orchestrator.pipeline.canvas import job_canvas, planned_stages, send_deploy
from services.domain.decisions import DecisionStatus
from services.domain.errors import ConfigError, FlywheelError, InsufficientData
from services.domain.jobs import JobOverrides, JobStatus
from services.domain.jobs import Stage as StageName
from services.domain.layout import ArtifactLayout
from services.domain.settings import Settings, TrainingSettings, apply_overrides, format_validation_error

log = logging.getLogger(__name__)

DATA_SECTIONS = ("data_split", "datasets", "icl", "workloads")


class Conflict(FlywheelError):
    """The operation does not fit the job's state (delete a running job, approve without a decision)."""


def validate_overrides(settings: Settings, raw: dict[str, Any] | None) -> JobOverrides:
    """Overrides checked against the same schema as config.yaml; ConfigError names what is wrong."""
    try:
        overrides = JobOverrides.model_validate(raw or {})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source="overrides")) from None
    if overrides.data:
        apply_overrides(settings, overrides.data, allowed=DATA_SECTIONS)
    if overrides.candidates is not None:
        if not overrides.candidates:
            raise ConfigError("overrides.candidates is empty; name at least one candidate or leave it out")
        for name in overrides.candidates:
            settings.candidate(name)
    if overrides.training:
        try:
            TrainingSettings.model_validate({**settings.training.model_dump(), **overrides.training})
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, source="overrides.training", model=TrainingSettings)) from None
    return overrides


class JobService:
    def __init__(self, settings: Settings, store: JobStore, app: Celery) -> None:
        self.settings, self.store, self.app = settings, store, app

    def create(self, *, workload_id: str, client_id: str | None, overrides: dict[str, Any] | None = None,
               actor: str | None = None, log_records: int | None = None) -> Job:
        """Validate, plan, enqueue. `log_records` (the log store's count now) lets schedules count new data."""
        checked = validate_overrides(self.settings, overrides)
        if log_records is None:
            log_records = self._refuse_without_records(workload_id, client_id)
        stages = [(stage.value, candidate) for stage, candidate in planned_stages(self.settings, checked)]
        job = self.store.create_job(workload_id=workload_id, client_id=client_id,
                                    overrides=checked.model_dump(mode="json", exclude_defaults=True), stages=stages)
        canvas = job_canvas(self.app, self.settings, job_id=job.id, workload_id=workload_id, client_id=client_id,
                            overrides=checked)
        try:
            canvas.apply_async()
        except Exception as exc:  # noqa: BLE001 - the broker is down: the job must not stay queued forever
            self.store.set_job(job.id, status=JobStatus.FAILED, error=f"could not enqueue: {exc}")
            raise FlywheelError(f"the queue is unavailable ({type(exc).__name__}: {exc}); job {job.id} failed") from exc
        self.store.add_event("job.created", actor=actor, job_id=job.id, workload_id=workload_id, client_id=client_id,
                             detail={"overrides": job.overrides,
                                     "log_records": log_records if log_records is not None else self._log_total(
                                         workload_id, client_id)})
        return self.store.get_job(job.id)

    def _refuse_without_records(self, workload_id: str, client_id: str | None) -> int | None:
        """A job for a workload (or client) with no logged records would fail at its first stage: refuse it now,
        naming the workloads that have records. Best effort: an unreachable log store lets the job try."""
        try:
            from services.datastore.stores import open_log_store

            store = open_log_store(self.settings.log_store, self.settings.ingest)
            try:
                counts = store.counts()
            finally:
                store.close()
        except Exception as exc:  # noqa: BLE001 - the build stage will report the store's error itself
            log.warning("could not count the logs of %s: %s", workload_id, exc)
            return None
        total = sum(c.records for c in counts
                    if c.workload_id == workload_id and (client_id is None or c.client_id == client_id))
        if total == 0:
            known = sorted({c.workload_id for c in counts})
            who = f" from client {client_id!r}" if client_id else ""
            raise InsufficientData(
                f"workload {workload_id!r} has no logged records{who}; workloads with records: "
                f"{', '.join(known) if known else '(none: ingest teacher logs first, `flywheel ingest FILE`)'}")
        return total

    def _log_total(self, workload_id: str, client_id: str | None) -> int | None:
        """Best effort: the count is only bookkeeping for schedules; a log-store hiccup must not fail a job."""
        try:
            from services.datastore.service import count_logs

            return count_logs(self.settings, workload_id, client_id)
        except Exception as exc:  # noqa: BLE001
            log.warning("could not count the logs of %s: %s", workload_id, exc)
            return None

    def cancel(self, job_id: str, *, actor: str | None = None) -> Job:
        job = self.store.request_cancel(job_id)
        self.store.add_event("job.cancel_requested", actor=actor, job_id=job_id, workload_id=job.workload_id)
        return job

    def approve(self, job_id: str, *, actor: str | None = None) -> Job:
        job = self.store.get_job(job_id)
        decision = job.decision
        if decision is None or decision.status is not DecisionStatus.AWAITING_APPROVAL:
            raise Conflict(f"job {job_id} has no decision awaiting approval (decision status: "
                           f"{decision.status if decision else 'none yet'})")
        approved = decision.approved(actor, at=datetime.now(UTC))
        job = self.store.set_job(job_id, decision=approved)
        send_deploy(self.app, job_id, approved)
        self.store.add_event("job.approved", actor=actor, job_id=job_id, workload_id=job.workload_id,
                             detail={"chosen": approved.chosen, "artifact_id": approved.artifact_id})
        return job

    def delete(self, job_id: str, *, actor: str | None = None) -> dict[str, Any]:
        """Delete a finished job and what it created (artifacts, evaluations, datasets) that nothing else uses.

        A promoted student (the job's chosen artifact) is kept. A job still queued or running must be
        cancelled first.
        """
        job = self.store.get_job(job_id)
        if not JobStatus(job.status).finished:
            raise Conflict(f"job {job_id} is {job.status}; cancel it first (POST /api/jobs/{job_id}/cancel or "
                           f"`flywheel jobs cancel {job_id}`), then delete it")
        removed = self._cleanup(job)
        self.store.delete_job(job_id)
        self.store.add_event("job.deleted", actor=actor, job_id=job_id, workload_id=job.workload_id,
                             client_id=job.client_id, detail=removed)
        return {"id": job_id, "deleted": True, **removed}

    def _cleanup(self, job: Job) -> dict[str, Any]:
        layout = ArtifactLayout(self.settings.artifacts.root)
        kept: set[str] = {job.decision.artifact_id} if job.decision and job.decision.artifact_id else set()
        removed: dict[str, list[str]] = {"artifacts": [], "evaluations": [], "datasets": []}
        for stage in job.stages:
            result = stage.result or {}
            artifact_id = result.get("artifact_id")
            if stage.name == StageName.CUSTOMIZE.value and artifact_id and artifact_id not in kept:
                others = [j for j in self.store.jobs_using(artifact_id=artifact_id) if j != job.id]
                path = result.get("path")
                if not others and path and Path(path).is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                    removed["artifacts"].append(artifact_id)
        dataset_id = next((s.result.get("dataset_id") for s in job.stages
                           if s.name == StageName.BUILD_DATASET.value and s.result), None)
        if dataset_id and not [j for j in self.store.jobs_using(dataset_id=dataset_id) if j != job.id]:
            removed["evaluations"] = layout.delete_evaluations(dataset_id, keep_artifacts=kept)
            if not kept and layout.datasets.delete(dataset_id):
                removed["datasets"].append(dataset_id)
                removed["blobs"] = layout.datasets.collect_unused_blobs()
        return removed
