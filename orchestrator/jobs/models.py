"""The job store's tables: a job, its stages (one row per stage and candidate), its events.

One status vocabulary end to end (`JobStatus`): queued, running, completed, failed, cancelled.
Schema changes go through Alembic migrations (`orchestrator/jobs/migrations`), never create_all,
so SQLite (embedded) and PostgreSQL (production) always have the same schema.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


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
    decision: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
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
