"""The FastAPI app: `create_app(settings)`; `flywheel serve api` runs it under uvicorn.

Middleware gives every request an id (X-Request-ID, echoed or generated), caps body size, and
counts requests and latency for /metrics. The app holds the job store, the route store, a Celery
app with no tasks registered (tasks are sent by name: this process never imports torch or a worker)
and the job service; they are opened at start-up (`lifespan`), closed at shutdown, and reach the
routes through `orchestrator.api.deps`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from orchestrator.api import errors
from orchestrator.api.metrics import Metrics
from orchestrator.api.routes_jobs import router as jobs_router
from orchestrator.api.routes_system import router as system_router
from orchestrator.api.routes_workloads import router as workloads_router
from orchestrator.dashboard import router as dashboard_router
from orchestrator.jobs.service import JobService
from orchestrator.jobs.store import JobStore
from services.deployment.routes import RouteStore
from services.domain.queue import make_celery_app
from services.domain.settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings, *, store: JobStore | None = None, celery_app: Any = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = store is None
        app.state.store = store or JobStore(settings.job_store.url)
        app.state.celery = celery_app or make_celery_app(settings.queue, name="flywheel-api")
        app.state.jobs = JobService(settings, app.state.store, app.state.celery)
        # cache_s=0: an operator's promote or rollback shows at once (the gateway keeps its own cache).
        app.state.routes = RouteStore(settings.job_store.url, cache_s=0)
        try:
            yield
        finally:
            app.state.routes.close()
            if owned:
                app.state.store.close()

    app = FastAPI(
        title="Data flywheel orchestrator",
        version="0.1.0",
        description=("Create, watch, cancel and delete flywheel jobs; ingest teacher logs; erase a client's data. "
                     "Errors are JSON: {\"error\": {\"type\", \"message\", \"request_id\"}}. With auth enabled, send "
                     "'Authorization: Bearer <token>' (read scope for GET, write scope otherwise)."),
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    errors.install(app)
    app.include_router(jobs_router)
    app.include_router(workloads_router)
    app.include_router(system_router)
    app.include_router(dashboard_router)

    @app.middleware("http")
    async def request_context(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        request.state.request_id = request_id[:128]
        started = time.perf_counter()
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > settings.api.max_request_bytes:
            response: Response = JSONResponse(errors.error_body(
                request, 413, "payload_too_large",
                f"request body of {int(length)} bytes exceeds api.max_request_bytes ({settings.api.max_request_bytes}); "
                "split it into smaller batches"), 413)
        else:
            response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        metrics: Metrics = app.state.metrics
        metrics.requests.labels(request.method, template, str(response.status_code)).inc()
        metrics.latency.labels(request.method, template).observe(time.perf_counter() - started)
        response.headers["X-Request-ID"] = request.state.request_id
        return response

    return app
