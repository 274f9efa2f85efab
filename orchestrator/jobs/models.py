"""The job store's tables: a job, its stages (one row per stage and candidate), its events.

One status vocabulary end to end (`JobStatus`, in the shared domain): queued, running, completed, failed, cancelled.
Schema changes go through Alembic migrations (`orchestrator/jobs/migrations`), never create_all,
so SQLite (embedded) and PostgreSQL (production) always have the same schema.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, String, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from services.domain.decisions import PromotionDecision
from services.domain.jobs import JobStatus

__all__ = ["Base", "Event", "Job", "JobStatus", "Stage"]


class DecisionJSON(TypeDecorator[PromotionDecision]):
    """A `PromotionDecision` kept as JSON and parsed once, where it is loaded (older rows, without the
    approval fields, load too)."""

    impl = JSON
    cache_ok = True

    def process_bind_param(self, value: PromotionDecision | dict[str, Any] | None, dialect: Dialect) -> Any:
        return None if value is None else PromotionDecision.model_validate(value).model_dump(mode="json")

    def process_result_value(self, value: Any, dialect: Dialect) -> PromotionDecision | None:
        return None if value is None else PromotionDecision.model_validate(value)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON}


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workload_id: Mapped[str] = mapped_column(String(200))
    client_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED.value)
    overrides: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    dataset_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    decision: Mapped[PromotionDecision | None] = mapped_column(DecisionJSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    stages: Mapped[list[Stage]] = relationship(back_populates="job", cascade="all, delete-orphan",
                                               order_by="Stage.id")

    __table_args__ = (Index("ix_jobs_workload_created", "workload_id", "created_at"),
                      Index("ix_jobs_status", "status"))


class Stage(Base):
    __tablename__ = "stages"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))  # build_dataset, base_eval, icl_eval, customize, ...
    candidate: Mapped[str | None] = mapped_column(String(200), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED.value)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # live progress: step, loss, eta
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    job: Mapped[Job] = relationship(back_populates="stages")

    __table_args__ = (Index("ix_stages_job", "job_id", "name", "candidate", unique=True),)


class Event(Base):
    """An audit or schedule event: job created/cancelled/deleted/approved, client data erased, run skipped.

    No foreign key to jobs: the audit trail outlives a deleted job.
    """

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str | None] = mapped_column(String(200), nullable=True)
    job_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    workload_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    client_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    __table_args__ = (Index("ix_events_kind_at", "kind", "at"), Index("ix_events_workload_at", "workload_id", "at"))
