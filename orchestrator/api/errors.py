"""Typed JSON errors: every error response has the same body, whatever raised it.

    {"error": {"type": "not_found", "message": "no job 'x'", "request_id": "…", "details": [...]}}

The platform's exceptions map to status codes here and only here; an unexpected exception is a
500 with the request id (its traceback goes to the log, never to the client).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from orchestrator.jobs.service import Conflict
from orchestrator.jobs.store import JobNotFound
from services.domain.errors import ConfigError, FlywheelError, InsufficientData, StoreError

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, type_: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.type, self.message, self.headers = status, type_, message, headers


STATUS_OF: list[tuple[type[Exception], int, str]] = [
    (JobNotFound, 404, "not_found"),
    (Conflict, 409, "conflict"),
    (ConfigError, 422, "invalid_request"),
    (InsufficientData, 422, "insufficient_data"),
    (StoreError, 503, "store_unavailable"),
    (FlywheelError, 500, "internal_error"),
]

HTTP_TYPES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
              409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type", 422: "invalid_request",
              429: "rate_limited", 503: "unavailable"}


def error_body(request: Request, status: int, type_: str, message: str, details: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"type": type_, "message": message,
                             "request_id": getattr(request.state, "request_id", None)}
    if details is not None:
        error["details"] = details
    return {"error": error}


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(request, exc.status, exc.type, exc.message), exc.status, headers=exc.headers)

    @app.exception_handler(FlywheelError)
    async def _flywheel_error(request: Request, exc: FlywheelError) -> JSONResponse:
        status, type_ = next((s, t) for cls, s, t in STATUS_OF if isinstance(exc, cls))
        if status >= 500:
            log.error("request %s failed: %s", getattr(request.state, "request_id", "?"), exc)
        return JSONResponse(error_body(request, status, type_, str(exc)), status)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [{"loc": [str(p) for p in e.get("loc", ())], "message": e.get("msg"), "type": e.get("type")}
                   for e in exc.errors()]
        where = "; ".join(f"{'.'.join(d['loc'])}: {d['message']}" for d in details[:5])
        return JSONResponse(error_body(request, 422, "invalid_request", f"invalid request: {where}", details), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        type_ = HTTP_TYPES.get(exc.status_code, "error")
        return JSONResponse(error_body(request, exc.status_code, type_, str(exc.detail)), exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        request_id = getattr(request.state, "request_id", "?")
        log.exception("request %s failed unexpectedly", request_id)
        return JSONResponse(error_body(request, 500, "internal_error",
                                       f"internal error ({type(exc).__name__}); quote request id {request_id}"), 500)
