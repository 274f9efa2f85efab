"""The JSON of /api/workloads and the route operations as pydantic models.

`WorkloadSummary` describes what `orchestrator.workloads.workloads_summary` builds; a route is the
route store's own `Route` record (its JSON is already the public shape).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from orchestrator.api.schemas_jobs import JobSummary
from services.deployment.routes import Phase, Route


class LatestDecision(BaseModel):
    """The newest completed job of the workload and what it decided."""

    job_id: str
    chosen: str | None
    status: str | None
    reason: str | None


class RouteBrief(BaseModel):
    phase: Phase
    student: str | None = Field(description="The candidate serving (or shadowing) the workload.")
    artifact_id: str | None
    canary_percent: int
    job_id: str | None = Field(description="The job whose decision set the route.")


class TrafficCounts(BaseModel):
    requests: int
    input_tokens: int
    output_tokens: int


class Traffic(BaseModel):
    """What the gateways served, by who answered, since they first ran; and the teacher cost avoided."""

    teacher: TrafficCounts
    student: TrafficCounts
    teacher_cost_per_1k_requests: float | None = Field(description="As the deciding job priced the teacher.")
    teacher_cost_avoided_usd: float | None = Field(description="Student requests at the teacher's cost; null "
                                                                "when no decision priced the teacher.")


class WorkloadSummary(BaseModel):
    workload_id: str
    records: int = Field(description="Logged records, all clients.")
    clients: dict[str, int] = Field(description="Logged records per client id.")
    last_record_at: float | None = Field(description="Unix time of the newest record, or null.")
    last_job: JobSummary | None
    latest_decision: LatestDecision | None
    route: RouteBrief
    traffic: Traffic


class WorkloadList(BaseModel):
    workloads: list[WorkloadSummary]


class RouteEvent(BaseModel):
    """One change of a workload's route."""

    id: int
    workload_id: str
    at: str = Field(description="ISO 8601 time.")
    action: str
    detail: dict[str, Any]


class RouteView(BaseModel):
    route: Route
    history: list[RouteEvent] = Field(description="The newest 20 changes, newest first.")
