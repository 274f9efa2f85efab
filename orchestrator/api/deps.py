"""What a route may ask for, as `Annotated` dependencies: the settings, the stores and services the app
opened in its lifespan (`app.state`), and the caller with the scope the route needs.

    def get_job(job_id: str, store: JobStoreDep, _: ReadCaller) -> JobDetail: ...

Routes read `app.state` only through these, so a test can swap any of them with
`app.dependency_overrides[get_job_store] = ...`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from orchestrator.api.auth import Principal, authenticate
from orchestrator.api.errors import ApiError
from orchestrator.api.metrics import Metrics
from orchestrator.jobs.service import JobService
from orchestrator.jobs.store import JobStore
from services.deployment.routes import RouteStore
from services.domain.settings import Settings


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_job_store(request: Request) -> JobStore:
    store: JobStore = request.app.state.store
    return store


def get_job_service(request: Request) -> JobService:
    service: JobService = request.app.state.jobs
    return service


def get_route_store(request: Request) -> RouteStore:
    routes: RouteStore = request.app.state.routes
    return routes


def get_celery(request: Request) -> Any:
    """The Celery app tasks are sent by name through (no tasks registered in this process)."""
    return request.app.state.celery


def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
JobStoreDep = Annotated[JobStore, Depends(get_job_store)]
JobServiceDep = Annotated[JobService, Depends(get_job_service)]
RouteStoreDep = Annotated[RouteStore, Depends(get_route_store)]
CeleryDep = Annotated[Any, Depends(get_celery)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]


def _caller(request: Request, settings: Settings, scope: str) -> Principal:
    principal = authenticate(settings.api.auth, request)
    if scope not in principal.scopes:
        raise ApiError(403, "forbidden", f"token {principal.name!r} lacks the {scope!r} scope")
    return principal


def read_caller(request: Request, settings: SettingsDep) -> Principal:
    """The caller, who must hold the `read` scope (every GET under /api)."""
    return _caller(request, settings, "read")


def write_caller(request: Request, settings: SettingsDep) -> Principal:
    """The caller, who must hold the `write` scope (anything that changes state)."""
    return _caller(request, settings, "write")


ReadCaller = Annotated[Principal, Depends(read_caller)]
WriteCaller = Annotated[Principal, Depends(write_caller)]
