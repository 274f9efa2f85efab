"""Log ingestion, client data erasure, audit events, health, readiness, metrics."""

from __future__ import annotations

import gzip
import hashlib
import io
import time
import zlib
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse
from prometheus_client import generate_latest
from sqlalchemy import text

from orchestrator.api.deps import CeleryDep, JobStoreDep, MetricsDep, ReadCaller, SettingsDep, WriteCaller
from orchestrator.api.errors import ApiError
from orchestrator.api.schemas_jobs import EventList
from orchestrator.api.schemas_system import Check, ErasureReport, Health, IngestSummary, Readiness
from orchestrator.jobs.store import JobStore
from orchestrator.jobs.view import event_view
from services.domain.settings import Settings

router = APIRouter()


async def _body(request: Request, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "payload_too_large", f"request body exceeds api.max_request_bytes ({limit}); "
                                                     "split it into smaller batches")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post("/api/logs", tags=["logs"], summary="Bulk-ingest teacher log records (JSON Lines, optionally gzip)")
async def ingest_logs(request: Request, settings: SettingsDep, metrics: MetricsDep,
                      caller: WriteCaller) -> IngestSummary:
    """One OpenAI-format record per line, as `flywheel ingest` reads them. Invalid lines are quarantined
    with a reason; the summary satisfies read == stored + quarantined + duplicates."""
    body = await _body(request, settings.api.max_request_bytes)
    if request.headers.get("content-encoding", "").lower() == "gzip" or body[:2] == b"\x1f\x8b":
        try:
            body = gzip.decompress(body)
        except (OSError, EOFError, zlib.error) as exc:
            raise ApiError(400, "bad_request", f"body is not valid gzip: {exc}") from None
    source = f"api:{caller.name}:{request.state.request_id}"
    summary = await run_in_threadpool(_ingest, settings, body, source)
    for outcome in ("stored", "quarantined", "duplicates"):
        metrics.ingested.labels(outcome).inc(summary[outcome])
    return IngestSummary.model_validate(summary)


def _ingest(settings: Settings, body: bytes, source: str) -> dict[str, Any]:
    from services.datastore.ingest import read_lines
    from services.datastore.service import ingest_batch

    lines = read_lines(io.BytesIO(body), max_bytes=settings.ingest.max_record_bytes)
    return ingest_batch(settings, lines, source=source, file_sha256=hashlib.sha256(body).hexdigest())


@router.delete("/api/clients/{client_id}/data", tags=["clients"],
               summary="Erase a client's logs, the datasets built from them and the students trained on those")
def erase_client_data(client_id: str, settings: SettingsDep, store: JobStoreDep, caller: WriteCaller) -> ErasureReport:
    from orchestrator.erasure import erase_client

    return ErasureReport.model_validate(erase_client(settings, store, client_id, actor=caller.name))


@router.get("/api/events", tags=["audit"], summary="Audit events, newest first")
def events(store: JobStoreDep, _: ReadCaller, kind: str | None = None, workload_id: str | None = None,
           limit: int = 100) -> EventList:
    rows = store.events(kind=kind, workload_id=workload_id, limit=max(1, min(limit, 1000)))
    return EventList.model_validate({"events": [event_view(e) for e in rows]})


@router.get("/api/health", tags=["system"], summary="Liveness: the process answers")
def health() -> Health:
    return Health(status="ok")


@router.get("/api/ready", tags=["system"], summary="Readiness: job store, log store, queue and tracking reachable",
            response_model_exclude_unset=True, responses={503: {"model": Readiness, "description": "Not ready"}})
def ready(response: Response, settings: SettingsDep, store: JobStoreDep, celery: CeleryDep) -> Readiness:
    checks = {"job_store": _check(lambda: _job_store(store)), "log_store": _check(lambda: _log_store(settings)),
              "queue": _check(lambda: _queue(settings, celery)), "tracking": _check(lambda: _tracking(settings))}
    ok = all(c.ok for c in checks.values())
    response.status_code = 200 if ok else 503
    return Readiness(status="ready" if ok else "not_ready", checks=checks)


def _check(probe: Callable[[], str | None]) -> Check:
    started = time.perf_counter()
    try:
        detail = probe()
        return Check(ok=True, ms=round((time.perf_counter() - started) * 1000, 1), **({"detail": detail} if detail else {}))
    except Exception as exc:  # noqa: BLE001 - readiness reports, never raises
        return Check(ok=False, ms=round((time.perf_counter() - started) * 1000, 1), error=f"{type(exc).__name__}: {exc}")


def _job_store(store: JobStore) -> None:
    with store.engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def _log_store(settings: Settings) -> None:
    from services.datastore.stores import open_log_store

    log_store = open_log_store(settings.log_store, settings.ingest)
    try:
        log_store.quarantine_counts()
    finally:
        log_store.close()


def _queue(settings: Settings, celery: Any) -> str:
    with celery.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, timeout=2)
    return settings.queue.backend


def _tracking(settings: Settings) -> str:
    tracking = settings.tracking
    if not tracking.enabled:
        return "disabled"
    uri = tracking.tracking_uri
    if uri.startswith(("http://", "https://")):
        import httpx

        httpx.get(uri.rstrip("/") + "/health", timeout=2).raise_for_status()
    return uri.split(":", 1)[0]


@router.get("/metrics", tags=["system"], summary="Prometheus metrics", response_class=PlainTextResponse,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                             "description": "The Prometheus text format"}})
def metrics(metrics: MetricsDep, store: JobStoreDep) -> PlainTextResponse:
    body = generate_latest(metrics.registry).decode()
    lines = ["# HELP flywheel_jobs Jobs in the job store by status.", "# TYPE flywheel_jobs gauge"]
    for status in ("queued", "running", "completed", "failed", "cancelled"):
        lines.append(f'flywheel_jobs{{status="{status}"}} {store.list_jobs(status=status, limit=1)[1]}')
    return PlainTextResponse(body + "\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")
