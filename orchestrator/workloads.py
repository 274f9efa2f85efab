"""What each workload is doing: its logs, last job, latest decision, route and gateway traffic.

`GET /api/workloads` and the dashboard's pages both show `workloads_summary`; it reads the log
store, the job store and the route store it is given, and knows nothing of HTTP.
"""

from __future__ import annotations

from typing import Any

from orchestrator.jobs.models import Job
from orchestrator.jobs.store import JobNotFound, JobStore
from orchestrator.jobs.view import job_summary
from services.deployment.routes import RouteStore
from services.domain.settings import Settings


def workloads_summary(settings: Settings, store: JobStore, routes: RouteStore) -> list[dict[str, Any]]:
    """Per workload: records (per client), last job, latest decision, route, and gateway traffic (requests and
    tokens by who answered) with the teacher cost the student avoided."""
    from services.datastore.stores import open_log_store

    log_store = open_log_store(settings.log_store, settings.ingest)
    try:
        counts = log_store.counts()
    finally:
        log_store.close()
    out: dict[str, dict[str, Any]] = {}

    def entry_of(workload_id: str) -> dict[str, Any]:
        return out.setdefault(workload_id, {"workload_id": workload_id, "records": 0, "clients": {},
                                            "last_record_at": None})

    for row in counts:
        entry = entry_of(row.workload_id)
        entry["records"] += row.records
        entry["clients"][row.client_id] = row.records
        entry["last_record_at"] = max(entry["last_record_at"] or 0, row.last_timestamp)
    for workload_id in [*store.workload_summaries(), *(r.workload_id for r in routes.all())]:
        entry_of(workload_id)
    for workload_id, entry in out.items():
        last = store.last_job(workload_id)
        entry["last_job"] = job_summary(last) if last else None
        decided = store.list_jobs(workload_id=workload_id, status="completed", limit=1)[0]
        latest = decided[0].decision if decided else None  # a completed job always carries its decision
        entry["latest_decision"] = ({"job_id": decided[0].id, "chosen": latest.chosen, "status": latest.status.value,
                                     "reason": latest.reason} if decided and latest else None)
        route = routes.get(workload_id, fresh=True)
        entry["route"] = {"phase": route.phase, "student": route.candidate, "artifact_id": route.artifact_id,
                          "canary_percent": route.canary_percent, "job_id": route.job_id}
        traffic: dict[str, Any] = dict(routes.traffic(workload_id))
        # The teacher cost a student avoided: its requests at the teacher's cost per request, as the deciding
        # job measured it from the teacher's logged token usage and `pricing` (the student's own serving cost
        # is per hour, in the decision).
        deciding = _job_or_none(store, route.job_id) if route.job_id else (decided[0] if decided else None)
        per_1k = deciding.decision.teacher_cost_per_1k_requests if deciding and deciding.decision else None
        traffic["teacher_cost_per_1k_requests"] = per_1k
        traffic["teacher_cost_avoided_usd"] = (round(traffic["student"]["requests"] / 1000 * per_1k, 6)
                                               if per_1k is not None else None)
        entry["traffic"] = traffic
    return sorted(out.values(), key=lambda e: e["workload_id"])


def _job_or_none(store: JobStore, job_id: str) -> Job | None:
    try:
        return store.get_job(job_id)
    except JobNotFound:  # deleted since; the route outlives it
        return None
