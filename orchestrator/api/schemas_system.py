"""The JSON of log ingestion, client data erasure, health and readiness as pydantic models."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class IngestSummary(BaseModel):
    """What happened to every line of the batch: read == stored + quarantined + duplicates."""

    read: int
    stored: int
    quarantined: int
    duplicates: int
    reasons: dict[str, int] = Field(description="Quarantined lines per reason code.")
    errors: list[dict[str, Any]] = Field(description="Failures that stopped part of the batch, with their cause.")


class RetiredStudent(BaseModel):
    artifact_id: str
    candidate: str


class ErasureReport(BaseModel):
    """What erasing a client's data removed, and the audit event that records it."""

    client_id: str
    logs_deleted: int
    datasets_erased: list[str]
    blobs_removed: int
    students_retired: list[RetiredStudent]
    audit_event_id: int


class Health(BaseModel):
    status: Literal["ok"]


class Check(BaseModel):
    ok: bool
    ms: float = Field(description="How long the probe took, in milliseconds.")
    detail: str | None = Field(default=None, description="What answered (e.g. the queue backend), when it says.")
    error: str | None = Field(default=None, description="Why the probe failed.")


class Readiness(BaseModel):
    """200 when every check passes, 503 otherwise (same body)."""

    status: Literal["ready", "not_ready"]
    checks: dict[str, Check] = Field(description="job_store, log_store, queue and tracking.")
