"""/api/jobs: create, list, show, cancel, approve, delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from orchestrator.api.auth import Principal, require
from orchestrator.jobs.view import event_view, job_summary, job_view
from services.domain.jobs import JobStatus

router = APIRouter(prefix="/api/jobs", tags=["jobs"])

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$"
# An offset past a signed 64-bit integer overflows the database (sqlite3 raises OverflowError, a 500;
# PostgreSQL's OFFSET is a bigint too): refuse it as a 422 (found by tests/api/test_openapi_fuzz.py).
MAX_OFFSET = 2**63 - 1


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


@router.post("", status_code=201, response_model=JobCreated, summary="Create and enqueue a flywheel job")
def create_job(body: JobCreate, request: Request, response: Response,
               principal: Annotated[Principal, Depends(require("write"))]) -> dict[str, Any]:
    job = request.app.state.jobs.create(workload_id=body.workload_id, client_id=body.client_id,
                                        overrides=body.overrides, actor=principal.name)
    response.headers["Location"] = f"/api/jobs/{job.id}"
    return {"id": job.id, "status": job.status}


@router.get("", summary="List jobs, newest first")
def list_jobs(request: Request, _: Annotated[Principal, Depends(require("read"))],
              workload_id: str | None = None, status: JobStatus | None = None,
              limit: Annotated[int, Query(ge=1, le=500)] = 50,
              offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0) -> dict[str, Any]:
    jobs, total = request.app.state.store.list_jobs(workload_id=workload_id, status=status.value if status else None,
                                                    limit=limit, offset=offset)
    return {"jobs": [job_summary(j) for j in jobs], "total": total, "limit": limit, "offset": offset}


@router.get("/{job_id}", summary="A job: stages, dataset, candidates with evaluations, decision")
def get_job(job_id: str, request: Request, _: Annotated[Principal, Depends(require("read"))]) -> dict[str, Any]:
    return job_view(request.app.state.store.get_job(job_id))


@router.get("/{job_id}/events", summary="The job's audit events")
def job_events(job_id: str, request: Request, _: Annotated[Principal, Depends(require("read"))]) -> dict[str, Any]:
    request.app.state.store.get_job(job_id)
    return {"events": [event_view(e) for e in request.app.state.store.events(job_id=job_id)]}


@router.post("/{job_id}/cancel", status_code=202, summary="Cancel: queued work never starts, running work stops")
def cancel_job(job_id: str, request: Request,
               principal: Annotated[Principal, Depends(require("write"))]) -> dict[str, Any]:
    return job_summary(request.app.state.jobs.cancel(job_id, actor=principal.name))


@router.post("/{job_id}/approve", summary="Approve a decision that awaits approval (require_approval)")
def approve_job(job_id: str, request: Request,
                principal: Annotated[Principal, Depends(require("write"))]) -> dict[str, Any]:
    return job_view(request.app.state.jobs.approve(job_id, actor=principal.name))


@router.delete("/{job_id}", summary="Delete a finished job and what it created (keeps a promoted student)")
def delete_job(job_id: str, request: Request,
               principal: Annotated[Principal, Depends(require("write"))]) -> dict[str, Any]:
    return request.app.state.jobs.delete(job_id, actor=principal.name)
