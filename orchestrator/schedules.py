"""Scheduled runs and the drift trigger: when a workload gets a new job without anyone asking.

- A cron run (`workloads.W.schedule.cron`, run by Celery beat) starts a job only when at least
  `min_new_records` records arrived since the workload's last job; otherwise it records the event
  "skipped: not enough new data" (not a job). A run also skips while a job of the workload is
  still queued or running.
- The drift check (`schedule.drift`) compares the labels of the newest teacher answers with the
  last completed job's dataset: the share of answers with a label that dataset never had, and
  the total-variation distance between the two label distributions. Past either threshold it
  starts a job and records why.
Every outcome is an event in the job store (`flywheel schedule list` shows them).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from orchestrator.jobs.service import JobService
from orchestrator.jobs.store import JobStore
from services.datastore.service import count_logs
from services.domain.datasets import read_dataset
from services.domain.jobs import JobStatus
from services.domain.labels import LabelParser
from services.domain.layout import ArtifactLayout
from services.domain.settings import Settings, parse_cron


def records_at_last_job(store: JobStore, workload_id: str) -> int | None:
    """The log-record count noted when the workload's last job was created (None: no job, or not noted)."""
    for event in store.events(kind="job.created", workload_id=workload_id, limit=1):
        value = (event.detail or {}).get("log_records")
        return int(value) if isinstance(value, int) else None
    return None


def _busy(store: JobStore, workload_id: str) -> str | None:
    for status in (JobStatus.QUEUED, JobStatus.RUNNING):
        jobs, _ = store.list_jobs(workload_id=workload_id, status=status.value, limit=1)
        if jobs:
            return jobs[0].id
    return None


def scheduled_run(settings: Settings, store: JobStore, service: JobService, workload_id: str) -> dict[str, Any]:
    """One cron tick for a workload: start a job, or record why not."""
    schedule = settings.workload(workload_id).schedule
    total = count_logs(settings, workload_id, schedule.client_id)
    last = records_at_last_job(store, workload_id)
    new = total - (last or 0)
    busy = _busy(store, workload_id)
    if busy is not None:
        reason = f"skipped: job {busy} of this workload is still queued or running"
    elif new < schedule.min_new_records:
        reason = f"skipped: not enough new data ({new} new records since the last job; needs {schedule.min_new_records})"
    else:
        job = service.create(workload_id=workload_id, client_id=schedule.client_id, overrides=schedule.overrides,
                             actor="schedule", log_records=total)
        store.add_event("schedule.started", actor="schedule", job_id=job.id, workload_id=workload_id,
                        detail={"new_records": new, "log_records": total})
        return {"started": True, "job_id": job.id, "new_records": new}
    store.add_event("schedule.skipped", actor="schedule", workload_id=workload_id,
                    detail={"reason": reason, "new_records": new, "log_records": total})
    return {"started": False, "reason": reason, "new_records": new}


def measure_drift(settings: Settings, store: JobStore, workload_id: str) -> dict[str, Any] | None:
    """Recent labels against the last completed job's dataset; None when there is nothing to compare."""
    from services.datastore.stores import open_log_store

    jobs, _ = store.list_jobs(workload_id=workload_id, status=JobStatus.COMPLETED.value, limit=1)
    if not jobs or not jobs[0].dataset_id:
        return None
    reference = ArtifactLayout(settings.artifacts.root).datasets.reference(jobs[0].dataset_id)
    if not reference.exists():
        return None
    baseline = (read_dataset(reference).manifest.get("label_distribution") or {}).get("train")
    if not baseline:
        return None
    workload = settings.workload(workload_id)
    drift = workload.schedule.drift
    parser = LabelParser(workload.label_pattern)
    log_store = open_log_store(settings.log_store, settings.ingest)
    try:
        recent = Counter(parser.parse(r.answer_text) for r in log_store.export(
            workload_id=workload_id, client_id=workload.schedule.client_id, limit=drift.window))
    finally:
        log_store.close()
    recent.pop(None, None)
    n = sum(recent.values())
    if n == 0:
        return None
    known, total_base = set(baseline), sum(baseline.values())
    new_share = sum(c for label, c in recent.items() if label not in known) / n
    labels = known | set(recent)
    tvd = 0.5 * sum(abs(recent.get(label, 0) / n - baseline.get(label, 0) / total_base) for label in labels)
    return {"recent_records": n, "new_label_share": round(new_share, 4), "distribution_shift": round(tvd, 4),
            "new_labels": sorted(label for label in recent if label is not None and label not in known)[:20],
            "baseline_job": jobs[0].id, "baseline_dataset": jobs[0].dataset_id}


def drift_check(settings: Settings, store: JobStore, service: JobService, workload_id: str) -> dict[str, Any]:
    drift = settings.workload(workload_id).schedule.drift
    measured = measure_drift(settings, store, workload_id)
    if measured is None:
        return {"started": False, "reason": "nothing to compare: no completed job with a dataset, or no labelled records"}
    reasons = []
    if measured["new_label_share"] >= drift.new_label_share:
        reasons.append(f"{measured['new_label_share']:.1%} of recent answers carry labels the last dataset lacks")
    if measured["distribution_shift"] >= drift.distribution_shift:
        reasons.append(f"label distribution moved by {measured['distribution_shift']:.2f} (total variation)")
    if not reasons:
        return {"started": False, "reason": "no drift", **measured}
    busy = _busy(store, workload_id)
    if busy is not None:
        return {"started": False, "reason": f"drift, but job {busy} is already queued or running", **measured}
    schedule = settings.workload(workload_id).schedule
    job = service.create(workload_id=workload_id, client_id=schedule.client_id, overrides=schedule.overrides,
                         actor="drift", log_records=count_logs(settings, workload_id, schedule.client_id))
    store.add_event("drift.triggered", actor="drift", job_id=job.id, workload_id=workload_id,
                    detail={"reasons": reasons, **measured})
    return {"started": True, "job_id": job.id, "reasons": reasons, **measured}


def beat_schedule(settings: Settings, task_names: tuple[str, str]) -> dict[str, dict[str, Any]]:
    """Celery beat entries: one per scheduled workload and one per drift-checked workload."""
    run_task, drift_task = task_names
    from services.domain.tasks import QUEUE_OF, ROUTE_CONTROLLER

    entries: dict[str, dict[str, Any]] = {
        "routes:controller": {"task": ROUTE_CONTROLLER, "schedule": parse_cron("* * * * *"),
                              "options": {"queue": QUEUE_OF[ROUTE_CONTROLLER]}}}
    for workload_id, workload in sorted(settings.workloads.items()):
        schedule = workload.schedule
        if schedule.cron:
            entries[f"schedule:{workload_id}"] = {"task": run_task, "schedule": parse_cron(schedule.cron),
                                                  "kwargs": {"payload": {"workload_id": workload_id}},
                                                  "options": {"queue": "orchestrator"}}
        if schedule.drift.enabled:
            entries[f"drift:{workload_id}"] = {"task": drift_task, "schedule": parse_cron(schedule.drift.check_cron),
                                               "kwargs": {"payload": {"workload_id": workload_id}},
                                               "options": {"queue": "orchestrator"}}
    return entries


def next_runs(settings: Settings, now: datetime | None = None) -> list[dict[str, Any]]:
    """When each schedule fires next (UTC)."""
    now = now or datetime.now(UTC)
    rows = []
    for name, entry in beat_schedule(settings, ("run", "drift")).items():
        kind, workload_id = name.split(":", 1)
        if kind == "routes":
            continue
        start, delta, _ = entry["schedule"].remaining_delta(now)
        rows.append({"workload_id": workload_id, "kind": "cron" if kind == "schedule" else "drift",
                     "cron": settings.workload(workload_id).schedule.cron if kind == "schedule"
                     else settings.workload(workload_id).schedule.drift.check_cron,
                     "next_run": (start + delta).isoformat(timespec="seconds")})
    return rows


__all__ = ["beat_schedule", "drift_check", "measure_drift", "next_runs", "scheduled_run"]
