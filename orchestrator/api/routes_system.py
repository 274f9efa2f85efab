"""Log ingestion, client data erasure, workloads, audit events, health, readiness, metrics."""

from __future__ import annotations

import gzip
import hashlib
import io
import time
import zlib
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import generate_latest
from sqlalchemy import text

from orchestrator.api.auth import Principal, require
from orchestrator.api.errors import ApiError
from orchestrator.jobs.view import event_view, job_summary

router = APIRouter()


async def _body(request: Request) -> bytes:
    limit = request.app.state.settings.api.max_request_bytes
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "payload_too_large", f"request body exceeds api.max_request_bytes ({limit}); "
                                                     "split it into smaller batches")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post("/api/logs", tags=["logs"], summary="Bulk-ingest teacher log records (JSON Lines, optionally gzip)")
async def ingest_logs(request: Request, principal: Annotated[Principal, Depends(require("write"))]) -> dict[str, Any]:
    """One OpenAI-format record per line, as `flywheel ingest` reads them. Invalid lines are quarantined
    with a reason; the summary satisfies read == stored + quarantined + duplicates."""
    body = await _body(request)
    if request.headers.get("content-encoding", "").lower() == "gzip" or body[:2] == b"\x1f\x8b":
        try:
            body = gzip.decompress(body)
        except (OSError, EOFError, zlib.error) as exc:
            raise ApiError(400, "bad_request", f"body is not valid gzip: {exc}") from None
    summary = await run_in_threadpool(_ingest, request, body, principal)
    metrics = request.app.state.metrics
    for outcome in ("stored", "quarantined", "duplicates"):
        metrics.ingested.labels(outcome).inc(summary[outcome])
    return summary


def _ingest(request: Request, body: bytes, principal: Principal) -> dict[str, Any]:
    from services.datastore.ingest import read_lines
    from services.datastore.service import ingest_batch

    settings = request.app.state.settings
    lines = read_lines(io.BytesIO(body), max_bytes=settings.ingest.max_record_bytes)
    return ingest_batch(settings, lines, source=f"api:{principal.name}:{request.state.request_id}",
                        file_sha256=hashlib.sha256(body).hexdigest())


@router.delete("/api/clients/{client_id}/data", tags=["clients"],
               summary="Erase a client's logs, the datasets built from them and the students trained on those")
def erase_client_data(client_id: str, request: Request,
                      principal: Annotated[Principal, Depends(require("write"))]) -> dict[str, Any]:
    from orchestrator.erasure import erase_client

    return erase_client(request.app.state.settings, request.app.state.store, client_id, actor=principal.name)


@router.get("/api/workloads", tags=["workloads"], summary="Workloads: record counts, last job, latest decision, route, traffic")
def workloads(request: Request, _: Annotated[Principal, Depends(require("read"))]) -> dict[str, Any]:
    state = request.app.state
    return {"workloads": workloads_summary(state.settings, state.store, route_store(request.app))}


def workloads_summary(settings: Any, store: Any, routes: Any) -> list[dict[str, Any]]:
    """Per workload: records (per client), last job, latest decision, route, and gateway traffic (requests and
    tokens by who answered) with the teacher cost the student avoided. The API and the dashboard show this."""
    from services.datastore.stores import open_log_store

    log_store = open_log_store(settings.log_store, settings.ingest)
    try:
        counts = log_store.counts()
    finally:
        log_store.close()
    out: dict[str, dict[str, Any]] = {}

    def entry_of(workload_id: str) -> dict[str, Any]:
        return out.setdefault(workload_id, {"workload_id": workload_id, "records": 0, "clients": {},
                                            "last_record_at": None})

    for row in counts:
        entry = entry_of(row.workload_id)
        entry["records"] += row.records
        entry["clients"][row.client_id] = row.records
        entry["last_record_at"] = max(entry["last_record_at"] or 0, row.last_timestamp)
    for workload_id in [*store.workload_summaries(), *(r.workload_id for r in routes.all())]:
        entry_of(workload_id)
    for workload_id, entry in out.items():
        last = store.last_job(workload_id)
        entry["last_job"] = job_summary(last) if last else None
        decided = store.list_jobs(workload_id=workload_id, status="completed", limit=1)[0]
        latest = decided[0].decision if decided else None  # a completed job always carries its decision
        entry["latest_decision"] = ({"job_id": decided[0].id, "chosen": latest.chosen, "status": latest.status.value,
                                     "reason": latest.reason} if decided and latest else None)
        route = routes.get(workload_id, fresh=True)
        entry["route"] = {"phase": route.phase, "student": route.candidate, "artifact_id": route.artifact_id,
                          "canary_percent": route.canary_percent, "job_id": route.job_id}
        traffic = routes.traffic(workload_id)
        # The teacher cost a student avoided: its requests at the teacher's cost per request, as the deciding
        # job measured it from the teacher's logged token usage and `pricing` (the student's own serving cost
        # is per hour, in the decision).
        deciding = _job_or_none(store, route.job_id) if route.job_id else (decided[0] if decided else None)
        per_1k = deciding.decision.teacher_cost_per_1k_requests if deciding and deciding.decision else None
        traffic["teacher_cost_per_1k_requests"] = per_1k
        traffic["teacher_cost_avoided_usd"] = (round(traffic["student"]["requests"] / 1000 * per_1k, 6)
                                               if per_1k is not None else None)
        entry["traffic"] = traffic
    return sorted(out.values(), key=lambda e: e["workload_id"])


@router.get("/api/events", tags=["audit"], summary="Audit events, newest first")
def events(request: Request, _: Annotated[Principal, Depends(require("read"))], kind: str | None = None,
           workload_id: str | None = None, limit: int = 100) -> dict[str, Any]:
    rows = request.app.state.store.events(kind=kind, workload_id=workload_id, limit=max(1, min(limit, 1000)))
    return {"events": [event_view(e) for e in rows]}


@router.get("/api/health", tags=["system"], summary="Liveness: the process answers")
def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/api/ready", tags=["system"], summary="Readiness: job store, log store, queue and tracking reachable")
def ready(request: Request) -> JSONResponse:
    checks = {"job_store": _check(lambda: _job_store(request)), "log_store": _check(lambda: _log_store(request)),
              "queue": _check(lambda: _queue(request)), "tracking": _check(lambda: _tracking(request))}
    ok = all(c["ok"] for c in checks.values())
    return JSONResponse({"status": "ready" if ok else "not_ready", "checks": checks}, 200 if ok else 503)


def _check(probe: Any) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        detail = probe()
        return {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 1), **({"detail": detail} if detail else {})}
    except Exception as exc:  # noqa: BLE001 - readiness reports, never raises
        return {"ok": False, "ms": round((time.perf_counter() - started) * 1000, 1), "error": f"{type(exc).__name__}: {exc}"}


def _job_store(request: Request) -> None:
    with request.app.state.store.engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def _log_store(request: Request) -> None:
    from services.datastore.stores import open_log_store

    settings = request.app.state.settings
    store = open_log_store(settings.log_store, settings.ingest)
    try:
        store.quarantine_counts()
    finally:
        store.close()


def _queue(request: Request) -> str:
    settings = request.app.state.settings
    with request.app.state.celery.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, timeout=2)
    return settings.queue.backend


def _tracking(request: Request) -> str:
    tracking = request.app.state.settings.tracking
    if not tracking.enabled:
        return "disabled"
    uri = tracking.tracking_uri
    if uri.startswith(("http://", "https://")):
        import httpx

        httpx.get(uri.rstrip("/") + "/health", timeout=2).raise_for_status()
    return uri.split(":", 1)[0]


@router.get("/metrics", tags=["system"], summary="Prometheus metrics", response_class=PlainTextResponse)
def metrics(request: Request) -> PlainTextResponse:
    registry = request.app.state.metrics.registry
    body = generate_latest(registry).decode()
    store = request.app.state.store
    lines = ["# HELP flywheel_jobs Jobs in the job store by status.", "# TYPE flywheel_jobs gauge"]
    for status in ("queued", "running", "completed", "failed", "cancelled"):
        lines.append(f'flywheel_jobs{{status="{status}"}} {store.list_jobs(status=status, limit=1)[1]}')
    return PlainTextResponse(body + "\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")


def _job_or_none(store: Any, job_id: str) -> Any:
    from orchestrator.jobs.store import JobNotFound

    try:
        return store.get_job(job_id)
    except JobNotFound:  # deleted since; the route outlives it
        return None


def route_store(app: Any) -> Any:
    """The app's RouteStore, opened on first use (the route tables live in the job-store database)."""
    from services.deployment.routes import RouteStore

    if getattr(app.state, "routes", None) is None:
        app.state.routes = RouteStore(app.state.settings.job_store.url, cache_s=0)
    return app.state.routes


def _route_view(routes: Any, workload_id: str) -> dict[str, Any]:
    route = routes.get(workload_id, fresh=True)
    return {"route": route.model_dump(mode="json"), "history": routes.history(workload_id, limit=20)}


@router.get("/api/workloads/{workload_id}/route", tags=["workloads"], summary="Who serves the workload, and the route history")
def get_route(workload_id: str, request: Request, _: Annotated[Principal, Depends(require("read"))]) -> dict[str, Any]:
    return _route_view(route_store(request.app), workload_id)


@router.post("/api/workloads/{workload_id}/promote", tags=["workloads"],
             summary="Move the student's route one phase on (shadow -> canary -> full)")
def promote_route(workload_id: str, request: Request,
                  principal: Annotated[Principal, Depends(require("write"))]) -> dict[str, Any]:
    from services.deployment.rollout import promote

    settings = request.app.state.settings
    promote(route_store(request.app), workload_id, canary_percent=settings.promotion_policy(workload_id).canary_percent,
            reason=f"operator {principal.name}")
    return _route_view(route_store(request.app), workload_id)


@router.post("/api/workloads/{workload_id}/rollback", tags=["workloads"],
             summary="Restore the previous route (the previous champion or the teacher)")
def rollback_route(workload_id: str, request: Request,
                   principal: Annotated[Principal, Depends(require("write"))]) -> dict[str, Any]:
    from services.deployment.rollout import rollback

    rollback(route_store(request.app), workload_id, reason=f"operator {principal.name}")
    return _route_view(route_store(request.app), workload_id)
