"""/api/jobs: create, list, show, cancel, approve, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from orchestrator.api.deps import JobServiceDep, JobStoreDep, ReadCaller, WriteCaller
from orchestrator.api.schemas_jobs import (
    EventList,
    JobCreate,
    JobCreated,
    JobDeleted,
    JobDetail,
    JobList,
    JobSummary,
)
from orchestrator.jobs.view import event_view, job_summary, job_view
from services.domain.jobs import JobStatus

router = APIRouter(prefix="/api/jobs", tags=["jobs"])

# An offset past a signed 64-bit integer overflows the database (sqlite3 raises OverflowError, a 500;
# PostgreSQL's OFFSET is a bigint too): refuse it as a 422 (found by tests/api/test_openapi_fuzz.py).
MAX_OFFSET = 2**63 - 1


@router.post("", status_code=201, summary="Create and enqueue a flywheel job")
def create_job(body: JobCreate, response: Response, jobs: JobServiceDep, caller: WriteCaller) -> JobCreated:
    job = jobs.create(workload_id=body.workload_id, client_id=body.client_id, overrides=body.overrides,
                      actor=caller.name)
    response.headers["Location"] = f"/api/jobs/{job.id}"
    return JobCreated(id=job.id, status=JobStatus(job.status))


@router.get("", summary="List jobs, newest first")
def list_jobs(store: JobStoreDep, _: ReadCaller, workload_id: str | None = None, status: JobStatus | None = None,
              limit: Annotated[int, Query(ge=1, le=500)] = 50,
              offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0) -> JobList:
    jobs, total = store.list_jobs(workload_id=workload_id, status=status.value if status else None,
                                  limit=limit, offset=offset)
    return JobList.model_validate({"jobs": [job_summary(j) for j in jobs], "total": total, "limit": limit,
                                   "offset": offset})


@router.get("/{job_id}", summary="A job: stages, dataset, candidates with evaluations, decision")
def get_job(job_id: str, store: JobStoreDep, _: ReadCaller) -> JobDetail:
    return JobDetail.model_validate(job_view(store.get_job(job_id)))


@router.get("/{job_id}/events", summary="The job's audit events")
def job_events(job_id: str, store: JobStoreDep, _: ReadCaller) -> EventList:
    store.get_job(job_id)
    return EventList.model_validate({"events": [event_view(e) for e in store.events(job_id=job_id)]})


@router.post("/{job_id}/cancel", status_code=202, summary="Cancel: queued work never starts, running work stops")
def cancel_job(job_id: str, jobs: JobServiceDep, caller: WriteCaller) -> JobSummary:
    return JobSummary.model_validate(job_summary(jobs.cancel(job_id, actor=caller.name)))


@router.post("/{job_id}/approve", summary="Approve a decision that awaits approval (require_approval)")
def approve_job(job_id: str, jobs: JobServiceDep, caller: WriteCaller) -> JobDetail:
    return JobDetail.model_validate(job_view(jobs.approve(job_id, actor=caller.name)))


@router.delete("/{job_id}", response_model_exclude_unset=True,
               summary="Delete a finished job and what it created (keeps a promoted student)")
def delete_job(job_id: str, jobs: JobServiceDep, caller: WriteCaller) -> JobDeleted:
    return JobDeleted.model_validate(jobs.delete(job_id, actor=caller.name))
