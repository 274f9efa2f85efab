"""The JSON of /api/jobs as pydantic models: what the routes accept and return, for /docs and clients.

The models describe the dicts `orchestrator.jobs.view` builds (the CLI's `--json` prints the same),
field for field. Parts whose inner shape belongs to another stage (an evaluation's public result, a
stage's live detail, the decision) are typed as objects here.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.domain.jobs import JobStatus

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$"
TIME = "ISO 8601 time, or null."


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workload_id: str = Field(pattern=ID_PATTERN, description="The workload whose logs the job learns from.")
    client_id: str | None = Field(None, pattern=ID_PATTERN, description="Only this client's logs (default: all).")
    overrides: dict[str, Any] | None = Field(
        None, description="Per-job overrides, validated like config.yaml: {data: {...}, candidates: [...], "
                          "training: {...}}.",
        examples=[{"candidates": ["minilm-classifier"], "training": {"max_steps": 50}}])


class JobCreated(BaseModel):
    id: str
    status: JobStatus


class JobSummary(BaseModel):
    """A job in lists: status and overall progress, no per-stage detail."""

    id: str
    workload_id: str
    client_id: str | None
    status: JobStatus
    created_at: str | None = Field(description=TIME)
    updated_at: str | None = Field(description=TIME)
    finished_at: str | None = Field(description=TIME)
    error: str | None
    dataset_id: str | None
    progress: float = Field(description="Share of the job's stages done, 0 to 1.")
    chosen: str | None = Field(description="The candidate the decision chose, if any.")
    cancel_requested: bool


class JobList(BaseModel):
    jobs: list[JobSummary]
    total: int = Field(description="Jobs matching the filters, all pages.")
    limit: int
    offset: int


class StageView(BaseModel):
    name: str
    candidate: str | None
    status: JobStatus
    progress: float
    detail: dict[str, Any] = Field(description="Live detail the stage reports (steps, loss, ...).")
    error: str | None
    started_at: str | None = Field(description=TIME)
    finished_at: str | None = Field(description=TIME)


class DatasetView(BaseModel):
    """The dataset the job built: from the build stage's result (fields absent there are null)."""

    dataset_id: str | None
    workload_type: str | None
    counts: dict[str, Any] | None = Field(description="Records per split.")
    labels: list[str] | None
    teacher_usage: dict[str, Any] | None = Field(description="The teacher's logged token usage over the dataset.")


class Evaluations(BaseModel):
    """Per kind, the evaluation's public result, or its stage's status while it has none."""

    base: dict[str, Any] | None
    icl: dict[str, Any] | None
    customized: dict[str, Any] | None


class TrainingView(BaseModel):
    status: JobStatus
    progress: float
    live: dict[str, Any] = Field(description="The trainer's live detail (step, loss, ...).")
    artifact_id: str | None
    path: str | None
    size_bytes: int | None
    metrics: dict[str, Any] | None
    error: str | None


class CandidateView(BaseModel):
    name: str
    status: JobStatus
    evaluations: Evaluations
    training: TrainingView | None


class FailedCandidate(BaseModel):
    candidate: str
    stage: str
    error: str | None


class JobDetail(JobSummary):
    """A job in full: stages, dataset, candidates with evaluations and training, decision."""

    overrides: dict[str, Any]
    stages: list[StageView]
    dataset: DatasetView | None
    candidates: list[CandidateView]
    failed_candidates: list[FailedCandidate]
    decision: dict[str, Any] | None = Field(description="The promotion decision and its status, once decided.")


class EventView(BaseModel):
    """One audit event."""

    id: int | None
    kind: str
    at: str | None = Field(description=TIME)
    actor: str | None
    job_id: str | None
    workload_id: str | None
    client_id: str | None
    detail: dict[str, Any]


class EventList(BaseModel):
    events: list[EventView]


class JobDeleted(BaseModel):
    """What deleting a job removed; `blobs` only when its dataset went too."""

    id: str
    deleted: bool
    artifacts: list[str]
    evaluations: list[str]
    datasets: list[str]
    blobs: list[str] | None = None
