"""What every part knows about a flywheel job: the status vocabulary, stage names, the job
reference a task carries, per-job overrides, and the narrow reporting interface workers use.

Workers never import the orchestrator's job store; they receive an object satisfying
`JobReporter` (the store itself, composed in by `flywheel worker`) and report stage progress
and results through it. One status vocabulary end to end: queued, running, completed, failed,
cancelled.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


class Stage(StrEnum):
    """Stage names, in pipeline order. Per-candidate stages carry the candidate name."""

    BUILD_DATASET = "build_dataset"
    BASE_EVAL = "base_eval"
    ICL_EVAL = "icl_eval"
    CUSTOMIZE = "customize"
    CUSTOMIZED_EVAL = "customized_eval"
    DECIDE = "decide"
    DEPLOY = "deploy"


EVAL_STAGE_OF_KIND = {"base": Stage.BASE_EVAL, "icl": Stage.ICL_EVAL, "customized": Stage.CUSTOMIZED_EVAL}


class JobRef(BaseModel):
    """Which job and stage a task works for (absent when a task is sent standalone)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job_id: str
    stage: Stage
    candidate: str | None = None


class JobOverrides(BaseModel):
    """What one job may change, validated against the same config schema before it is queued."""

    model_config = ConfigDict(extra="forbid")

    data: dict[str, Any] = Field(
        default_factory=dict,
        description="Overrides of the data sections (data_split, datasets, icl, workloads), nested or dotted "
                    "keys, e.g. {\"data_split.eval_size\": 300}.")
    candidates: list[str] | None = Field(
        None, description="Run only these candidates (names from config `candidates`). Default: every enabled one.")
    training: dict[str, Any] = Field(
        default_factory=dict, description="Training overrides for every candidate of this job, e.g. {\"max_steps\": 50}.")


class JobReporter(Protocol):
    """How a worker reports on the job it works for (the orchestrator's job store satisfies it)."""

    def set_stage(self, job_id: str, name: str, *, candidate: str | None = None, status: JobStatus | None = None,
                  progress: float | None = None, detail: dict[str, Any] | None = None,
                  result: dict[str, Any] | None = None, error: str | None = None) -> Any: ...

    def set_job(self, job_id: str, *, status: JobStatus | None = None, **fields: Any) -> Any: ...

    def cancel_requested(self, job_id: str) -> bool: ...
