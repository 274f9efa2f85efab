"""The gateway (`flywheel serve gateway`): the OpenAI-compatible endpoint a team points its clients at.
This module only wires it; docs/gateway.md says where each behaviour lives.

Each workload's route (services/deployment/routes.py, set by the deployment manager) says who answers
(routing.py): the teacher, or a promoted student in `full`, `canary` or behind a selective route's
confidence threshold, with the teacher answering whatever the student cannot; `shadow` compares in the
background. Students answer through the configured serving backend (local, OpenAI-compatible or
Kubernetes/vLLM); the teacher through its OpenAI-compatible upstream (upstream.py). Teacher answers are
logged to the datastore through a child process (log_shipper.py; a `TrafficLogger` thread where a test injects a
Celery app); responses say who answered (`X-Flywheel-Served-By`,
`X-Flywheel-Route-Phase`, and `model`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from services.deployment.backends.base import ServingBackend, backend_for
from services.deployment.gateway.endpoints import add_endpoints
from services.deployment.gateway.limits import limiter_for
from services.deployment.gateway.metrics import GatewayMetrics
from services.deployment.gateway.protocol import ApiKeys, GatewayError
from services.deployment.gateway.serving import ServingParts
from services.deployment.gateway.serving_chat import ChatService
from services.deployment.gateway.serving_embeddings import EmbeddingService
from services.deployment.gateway.serving_responses import ResponsesService
from services.deployment.gateway.upstream import TeacherUpstream
from services.deployment.gateway.usage import UsageCounter
from services.deployment.log_shipper import LogShipper
from services.deployment.routes import RouteStore
from services.deployment.traffic_log import TrafficLogger, TrafficSink
from services.domain.errors import ConfigError
from services.domain.settings import Settings

log = logging.getLogger(__name__)


def create_gateway(settings: Settings, *, celery_app: Any = None, logger: TrafficSink | None = None,
                   backend: ServingBackend | None = None) -> FastAPI:
    """The gateway app. `logger` (else a `TrafficLogger` thread over `celery_app`, else a `LogShipper` process
    over the configured queue) and `backend` (else the configured one) are injected; the rest comes from settings."""
    if settings.teacher.base_url is None:
        raise ConfigError("teacher.base_url is not set: the gateway needs the teacher's OpenAI-compatible URL")
    traffic = logger or _traffic_logger(settings, celery_app)
    routes = RouteStore(settings.job_store.url)
    metrics, usage = GatewayMetrics(traffic), UsageCounter(routes)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        upstream = await TeacherUpstream(
            settings.teacher, retried=lambda w, why: metrics.teacher_retries.labels(w, why).inc()).open()
        limiter = limiter_for(settings, routes)
        parts = ServingParts(settings, routes=routes, backend=app.state.backend, metrics=metrics, usage=usage,
                             traffic=traffic, upstream=upstream, limiter=limiter)
        app.state.chat, app.state.embeddings = ChatService(parts), EmbeddingService(parts)
        app.state.responses = ResponsesService(parts, chat=app.state.chat)
        usage.start()
        if limiter is not None:
            limiter.start()  # reads today's counts before the first request: a restart resets nobody's limits
        try:
            yield
        finally:
            await app.state.chat.drain()
            usage.close()  # its last flush writes to the route store: before the store closes
            if limiter is not None:
                limiter.close()
            await upstream.aclose()
            routes.close()
            if logger is None:
                traffic.close()

    app = FastAPI(title="Data flywheel gateway (OpenAI-compatible)", version="0.1.0", lifespan=lifespan)
    app.state.settings, app.state.traffic, app.state.routes = settings, traffic, routes
    app.state.backend, app.state.metrics, app.state.usage = backend or backend_for(settings), metrics, usage
    app.state.keys = ApiKeys(settings.gateway)
    app.exception_handler(GatewayError)(_gateway_error)
    app.exception_handler(Exception)(_unexpected)
    add_endpoints(app)
    return app


def run_gateway(settings: Settings, *, host: str | None = None, port: int | None = None) -> None:
    """Serve the gateway until stopped (`flywheel serve gateway`, and the gateway bench): uvicorn, with uvloop
    and httptools (uvicorn takes them when installed: requirements/base.txt), the access log as configured.
    What start-up loaded is frozen out of the garbage collector's scans: a full collection over it paused one
    request for 129 ms in 4,000 (measured; docs/gateway.md)."""
    import gc

    import uvicorn

    app = create_gateway(settings)
    gc.collect()
    gc.freeze()
    uvicorn.run(app, host=host or settings.gateway.host, port=port or settings.gateway.port,
                log_level="info", access_log=settings.gateway.access_log)


def _traffic_logger(settings: Settings, celery_app: Any) -> TrafficSink:
    if celery_app is None:  # sending leaves the gateway's process: it would hold the GIL between requests
        return LogShipper(settings.queue, settings.gateway).start()
    return TrafficLogger(celery_app, settings.gateway.spool_path, batch_size=settings.gateway.log_batch_size,
                         flush_interval_s=settings.gateway.log_flush_interval_s).start()


async def _gateway_error(_: Request, exc: GatewayError) -> Response:
    return exc.response()


async def _unexpected(_: Request, exc: Exception) -> Response:
    log.exception("gateway request failed")
    return GatewayError(500, f"internal gateway error ({type(exc).__name__})", "server_error").response()
