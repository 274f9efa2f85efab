"""The job store: SQLAlchemy over SQLite (embedded) or PostgreSQL (production), same code and schema.

`JobStore(url)` migrates the database to the newest schema on open (Alembic), then offers the
operations the API and the pipeline need. Status changes follow one vocabulary and never leave a
finished state (a late message from a worker cannot resurrect a cancelled job).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from orchestrator.jobs.models import Event, Job, JobStatus, Stage
from services.domain.errors import FlywheelError, StoreError
from services.domain.migrations import upgrade_to_head

MIGRATIONS = Path(__file__).parent / "migrations"


class JobNotFound(FlywheelError):
    """No job with that id."""


def _now() -> datetime:
    return datetime.now(UTC)


class JobStore:
    def __init__(self, url: str) -> None:
        try:
            if url.startswith("sqlite:///"):
                Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(url, pool_pre_ping=True)
            if self.engine.dialect.name == "sqlite":
                event.listen(self.engine, "connect", _sqlite_pragmas)
            self._sessions = sessionmaker(self.engine, expire_on_commit=False)
            self.upgrade()
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot open the job store at {self.engine.url!r}: {exc}") from exc

    def upgrade(self) -> None:
        """Migrate to the newest schema (a no-op when up to date)."""
        upgrade_to_head(self.engine, MIGRATIONS, lock_id=7243101)

    def close(self) -> None:
        self.engine.dispose()

    # --- jobs ---------------------------------------------------------------------------------

    def create_job(self, *, workload_id: str, client_id: str | None, overrides: dict[str, Any] | None = None,
                   stages: Sequence[tuple[str, str | None]] = ()) -> Job:
        """A queued job with its planned stage rows (queued too, so a new job shows its whole plan)."""
        now = _now()
        job = Job(id=str(uuid.uuid4()), workload_id=workload_id, client_id=client_id, status=JobStatus.QUEUED.value,
                  overrides=overrides or {}, cancel_requested=False, created_at=now, updated_at=now)
        job.stages = [Stage(name=name, candidate=candidate, status=JobStatus.QUEUED.value, progress=0.0, detail={})
                      for name, candidate in stages]
        with self._sessions.begin() as session:
            session.add(job)
        return self.get_job(job.id)

    def get_job(self, job_id: str) -> Job:
        """The job with this id, or with this unique id prefix (the short ids the dashboard and CLI show)."""
        with self._sessions() as session:
            job = session.get(Job, job_id, options=[selectinload(Job.stages)])
            if job is None and len(job_id) >= 4 and job_id.replace("-", "").isalnum():
                matches = session.scalars(select(Job.id).where(Job.id.startswith(job_id)).limit(3)).all()
                if len(matches) > 1:
                    raise JobNotFound(f"job id prefix {job_id!r} is ambiguous ({', '.join(matches)}, ...): "
                                      "give more of it")
                if matches:
                    job = session.get(Job, matches[0], options=[selectinload(Job.stages)])
            if job is None:
                raise JobNotFound(f"no job {job_id!r}")
            return job

    def list_jobs(self, *, workload_id: str | None = None, status: str | None = None, limit: int = 50,
                  offset: int = 0) -> tuple[list[Job], int]:
        """A page of jobs, newest first, and the total matching."""
        query = select(Job)
        if workload_id is not None:
            query = query.where(Job.workload_id == workload_id)
        if status is not None:
            query = query.where(Job.status == status)
        with self._sessions() as session:
            total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
            rows = session.scalars(query.options(selectinload(Job.stages))
                                   .order_by(Job.created_at.desc(), Job.id).limit(limit).offset(offset)).all()
            return list(rows), total

    def set_job(self, job_id: str, *, status: JobStatus | None = None, **fields: Any) -> Job:
        """Update a job; a finished job keeps its status (late updates are ignored for status)."""
        with self._sessions.begin() as session:
            job = session.get(Job, job_id)
            if job is None:
                raise JobNotFound(f"no job {job_id!r}")
            for key, value in fields.items():
                setattr(job, key, value)
            if status is not None and not JobStatus(job.status).finished:
                job.status = status.value
                if status.finished:
                    job.finished_at = _now()
            job.updated_at = _now()
        return self.get_job(job_id)

    def request_cancel(self, job_id: str) -> Job:
        """Flag the job; running work sees the flag between steps. A queued job is cancelled at once."""
        job = self.get_job(job_id)
        if JobStatus(job.status).finished:
            return job
        if job.status == JobStatus.QUEUED.value:
            return self.set_job(job_id, status=JobStatus.CANCELLED, cancel_requested=True)
        return self.set_job(job_id, cancel_requested=True)

    def cancel_requested(self, job_id: str) -> bool:
        with self._sessions() as session:
            return bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))

    def delete_job(self, job_id: str) -> None:
        with self._sessions.begin() as session:
            job = session.get(Job, job_id)
            if job is None:
                raise JobNotFound(f"no job {job_id!r}")
            session.delete(job)

    def jobs_using(self, *, dataset_id: str | None = None, artifact_id: str | None = None) -> list[str]:
        """Ids of jobs whose stage results name this dataset or artifact (lineage for cleanup and erasure)."""
        with self._sessions() as session:
            rows = session.execute(select(Stage.job_id, Stage.result).where(Stage.result.is_not(None))).all()
        found = []
        for job_id, result in rows:
            if (dataset_id and result.get("dataset_id") == dataset_id) or (
                    artifact_id and result.get("artifact_id") == artifact_id):
                found.append(job_id)
        return sorted(set(found))

    def last_job(self, workload_id: str) -> Job | None:
        jobs, _ = self.list_jobs(workload_id=workload_id, limit=1)
        return jobs[0] if jobs else None

    def workload_summaries(self) -> dict[str, dict[str, Any]]:
        """Per workload: number of jobs and the newest job's id, status and creation time."""
        with self._sessions() as session:
            rows = session.execute(select(Job.workload_id, func.count(), func.max(Job.created_at))
                                   .group_by(Job.workload_id)).all()
        return {w: {"jobs": n, "last_job_at": at} for w, n, at in rows}

    # --- events -------------------------------------------------------------------------------

    def add_event(self, kind: str, *, actor: str | None = None, job_id: str | None = None,
                  workload_id: str | None = None, client_id: str | None = None,
                  detail: dict[str, Any] | None = None) -> Event:
        event = Event(kind=kind, at=_now(), actor=actor, job_id=job_id, workload_id=workload_id,
                      client_id=client_id, detail=detail or {})
        with self._sessions.begin() as session:
            session.add(event)
        return event

    def events(self, *, kind: str | None = None, workload_id: str | None = None, job_id: str | None = None,
               limit: int = 100) -> list[Event]:
        query = select(Event)
        if kind is not None:
            query = query.where(Event.kind == kind)
        if workload_id is not None:
            query = query.where(Event.workload_id == workload_id)
        if job_id is not None:
            query = query.where(Event.job_id == job_id)
        with self._sessions() as session:
            return list(session.scalars(query.order_by(Event.at.desc(), Event.id.desc()).limit(limit)).all())

    # --- stages -------------------------------------------------------------------------------

    def set_stage(self, job_id: str, name: str, *, candidate: str | None = None, status: JobStatus | None = None,
                  progress: float | None = None, detail: dict[str, Any] | None = None,
                  result: dict[str, Any] | None = None, error: str | None = None) -> Stage:
        """Create or update one stage row (job, name, candidate); timestamps follow the status."""
        with self._sessions.begin() as session:
            stage = self._stage(session, job_id, name, candidate)
            if status is not None and not JobStatus(stage.status).finished:
                stage.status = status.value
                if status is JobStatus.RUNNING and stage.started_at is None:
                    stage.started_at = _now()
                if status.finished:
                    stage.finished_at = _now()
                    stage.progress = 1.0 if status is JobStatus.COMPLETED else stage.progress
            if progress is not None:
                stage.progress = max(0.0, min(1.0, progress))
            if detail is not None:
                stage.detail = detail
            if result is not None:
                stage.result = result
            if error is not None:
                stage.error = error
            session.flush()
            return stage

    @staticmethod
    def _stage(session: Session, job_id: str, name: str, candidate: str | None) -> Stage:
        query = select(Stage).where(Stage.job_id == job_id, Stage.name == name)
        query = query.where(Stage.candidate.is_(None) if candidate is None else Stage.candidate == candidate)
        stage = session.scalars(query).first()
        if stage is None:
            if session.get(Job, job_id) is None:
                raise JobNotFound(f"no job {job_id!r}")
            stage = Stage(job_id=job_id, name=name, candidate=candidate, status=JobStatus.QUEUED.value,
                          progress=0.0, detail={})
            session.add(stage)
        return stage


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")  # ON DELETE CASCADE for stages
    cursor.execute("PRAGMA journal_mode=WAL")  # the API reads while workers write
    cursor.close()
