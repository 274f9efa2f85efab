"""The gateway (`flywheel serve gateway`): the OpenAI-compatible endpoint a team points its clients at.

Each workload's route (`services/deployment/routes.py`, set by the deployment manager) says who
answers: the teacher, or a promoted student in phase `full` (every request) or `canary` (a share).
A student failure falls back to the teacher. In `shadow` the teacher answers and the student
answers in the background; in `canary`/`full` the teacher also answers `monitor_share` of the
student's requests in the background (logged, so the flywheel keeps learning). Both record
whether student and teacher agreed; the route controller (`rollout.control_routes`, on beat)
moves routes on or back by that live agreement. Teacher calls go to its OpenAI-compatible upstream
(streamed or not) and are logged to the datastore through `TrafficLogger` (asynchronous; spooled
when the queue is down). Responses say who answered (`X-Flywheel-Served-By`,
`X-Flywheel-Route-Phase`, and `model`). Cascade and the remote backends are still to come (issue 7).

Workload: the request's `model` names an alias (config `gateway.aliases`; every workload id is its
own alias) or the `X-Flywheel-Workload` header. Client: the API key's client wins, then the
`X-Flywheel-Client` header, then OpenAI `metadata.client_id`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import httpx
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from services.deployment.backends.base import backend_for
from services.deployment.gateway.streaming import StreamAssembler
from services.deployment.gateway.usage import UsageCounter
from services.deployment.routes import Route, RouteStore
from services.deployment.traffic_log import TrafficLogger
from services.domain.labels import LabelParser
from services.domain.prompts import StaticPrompt, strip_static
from services.domain.records import content_text
from services.domain.settings import Settings

log = logging.getLogger(__name__)

CHAT_STUDENTS = ("encoder_classifier", "causal_lm_lora")


class GatewayError(Exception):
    """An OpenAI-format error: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param

    def response(self) -> JSONResponse:
        return JSONResponse({"error": {"message": self.message, "type": self.type, "param": self.param,
                                       "code": self.code}}, self.status)


class GatewayMetrics:
    def __init__(self, logger: TrafficLogger) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("flywheel_gateway_requests_total", "Gateway requests.",
                                ["endpoint", "workload", "served_by", "status"], registry=self.registry)
        self.latency = Histogram("flywheel_gateway_request_seconds", "Gateway request latency.",
                                 ["endpoint", "served_by"], registry=self.registry)
        self.fallbacks = Counter("flywheel_gateway_fallbacks_total", "Student failures answered by the teacher.",
                                 ["workload"], registry=self.registry)
        self.cascade = Counter("flywheel_gateway_cascade_to_teacher_total",
                               "Student answers below the cascade threshold, answered by the teacher.", ["workload"],
                               registry=self.registry)
        self.prompt_mismatch = Counter(
            "flywheel_gateway_prompt_mismatch_total",
            "Requests whose prompt is not the one the routed student was trained on, answered by the teacher.",
            ["workload"], registry=self.registry)
        self.agreement = Counter("flywheel_gateway_agreement_total", "Requests answered by student and teacher.",
                                 ["workload", "phase", "agree"], registry=self.registry)
        spool = Gauge("flywheel_gateway_spool_depth", "Logged calls waiting in the spool file.", registry=self.registry)
        spool.set_function(lambda: logger.spool_depth)


def create_gateway(settings: Settings, *, celery_app: Any = None, logger: TrafficLogger | None = None,
                   transport: httpx.AsyncBaseTransport | None = None, backend: Any = None) -> FastAPI:
    if settings.teacher.base_url is None:
        from services.domain.errors import ConfigError

        raise ConfigError("teacher.base_url is not set: the gateway needs the teacher's OpenAI-compatible URL")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        headers = {}
        if settings.teacher.api_key is not None:
            headers["Authorization"] = f"Bearer {settings.teacher.api_key.get_secret_value()}"
        app.state.upstream = httpx.AsyncClient(base_url=str(settings.teacher.base_url).rstrip("/"), headers=headers,
                                               timeout=settings.teacher.timeout_s, transport=transport)
        usage.start()
        try:
            yield
        finally:
            usage.close()
            await app.state.upstream.aclose()
            if owned_logger:
                traffic.close()

    owned_logger = logger is None
    if logger is None:
        from services.domain.queue import make_celery_app

        logger = TrafficLogger(celery_app or make_celery_app(settings.queue, name="flywheel-gateway"),
                               settings.gateway.spool_path, batch_size=settings.gateway.log_batch_size,
                               flush_interval_s=settings.gateway.log_flush_interval_s).start()
    traffic = logger
    app = FastAPI(title="Data flywheel gateway (OpenAI-compatible)", version="0.1.0", lifespan=lifespan)
    app.state.settings, app.state.traffic = settings, traffic
    routes = RouteStore(settings.job_store.url)
    backend = backend or backend_for(settings)
    app.state.routes, app.state.backend = routes, backend
    app.state.metrics = metrics = GatewayMetrics(traffic)
    app.state.usage = usage = UsageCounter(routes)

    @app.exception_handler(GatewayError)
    async def _gateway_error(_: Request, exc: GatewayError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("gateway request failed")
        return GatewayError(500, f"internal gateway error ({type(exc).__name__})", "server_error").response()

    async def body_of(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if len(raw) > settings.gateway.max_request_bytes:
            raise GatewayError(413, f"request body exceeds {settings.gateway.max_request_bytes} bytes", code="too_large")
        try:
            body = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise GatewayError(400, f"request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise GatewayError(400, "request body must be a JSON object")
        return body

    def caller(request: Request, body: dict[str, Any]) -> tuple[str, str]:
        """(workload_id, client_id) for this request; 401 when keys are required and missing."""
        key_client = None
        if settings.gateway.auth_enabled:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            match = next((k for k in settings.gateway.keys if scheme.lower() == "bearer" and
                          hmac.compare_digest(k.token.get_secret_value().encode(), token.strip().encode())), None)
            if match is None:
                raise GatewayError(401, "invalid or missing API key (Authorization: Bearer <key>)",
                                   "authentication_error", code="invalid_api_key")
            key_client = match.client_id or match.name
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise GatewayError(400, "`model` is required: name a workload alias", param="model")
        workload = request.headers.get("x-flywheel-workload") or settings.gateway.aliases.get(model, model)
        metadata = cast(dict[str, Any], body.get("metadata")) if isinstance(body.get("metadata"), dict) else {}
        client = key_client or request.headers.get("x-flywheel-client") or metadata.get("client_id") or "default"
        return workload, str(client)

    def served_headers(phase: str = "teacher", served_by: str = "teacher") -> dict[str, str]:
        return {"X-Flywheel-Served-By": served_by, "X-Flywheel-Route-Phase": phase}

    def record(workload: str, client: str, request_body: dict[str, Any], response_body: dict[str, Any]) -> None:
        traffic.log({"workload_id": workload, "client_id": client, "timestamp": time.time(),
                     "request": request_body, "response": response_body})

    async def teacher_call(path: str, upstream_body: dict[str, Any]) -> httpx.Response:
        try:
            return cast(httpx.Response, await app.state.upstream.post(path, json=upstream_body))
        except httpx.HTTPError as exc:
            raise GatewayError(502, f"the teacher upstream failed: {type(exc).__name__}: {exc}", "upstream_error") from None

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        names = sorted(set(settings.gateway.aliases) | set(settings.workloads))
        return {"object": "list", "data": [{"id": n, "object": "model", "created": 0, "owned_by": "flywheel"}
                                           for n in names]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        started = time.perf_counter()
        body = await body_of(request)
        workload, client = caller(request, body)
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            raise GatewayError(400, "`messages` must be a non-empty list", param="messages")
        upstream_body = {k: v for k, v in body.items() if k != "metadata"} | {"model": settings.teacher.model}
        route = routes.get(workload)
        student_body = for_student(route, body) if student_answers(route) else None  # one draw per request (canary)
        if student_body is not None:
            answer = await student_chat(route, student_body)
            if answer is not None and not confident(route, answer):
                metrics.cascade.labels(workload).inc()
                answer = None  # below the selective threshold: the teacher answers
            if route.cascade:
                usage.add_route(workload, route.since, served=answer is not None)
            if answer is not None:
                if random.random() < settings.promotion_policy(workload).monitor_share:
                    spawn(monitor(route, client, upstream_body, answer))
                metrics.requests.labels("chat", workload, "student", "200").inc()
                usage.add(workload, "student", answer)
                metrics.latency.labels("chat", "student").observe(time.perf_counter() - started)
                headers = served_headers(route.phase, "student")
                if body.get("stream"):
                    return StreamingResponse(as_events(answer), media_type="text/event-stream", headers=headers)
                return JSONResponse(answer, 200, headers=headers)
        if body.get("stream"):
            return await stream_chat(workload, client, upstream_body, started, route, body)
        response = await teacher_call("/chat/completions", upstream_body)
        payload = response.json() if response.headers.get("content-type", "").startswith("application/json") else {
            "error": {"message": response.text[:500], "type": "upstream_error"}}
        if response.status_code == 200:
            record(workload, client, upstream_body, payload)
            usage.add(workload, "teacher", payload)
            if route.phase == "shadow" and route.student_kind in CHAT_STUDENTS:
                spawn(shadow(route, body, payload))
        metrics.requests.labels("chat", workload, "teacher", str(response.status_code)).inc()
        metrics.latency.labels("chat", "teacher").observe(time.perf_counter() - started)
        return JSONResponse(payload, response.status_code, headers=served_headers(route.phase))

    background: set[asyncio.Task[None]] = set()

    def spawn(coroutine: Any) -> None:
        """Work after the response (shadow answers, monitoring samples); never awaited by a request."""
        task = asyncio.get_running_loop().create_task(coroutine)
        background.add(task)
        task.add_done_callback(background.discard)

    def agree(workload: str, student: dict[str, Any], teacher: dict[str, Any]) -> bool:
        texts = [content_text(((a.get("choices") or [{}])[0].get("message") or {}).get("content")) for a in (student, teacher)]
        workload_settings = settings.workload(workload)
        if workload_settings.type in ("classification", "auto"):
            parser = LabelParser(workload_settings.label_pattern)
            labels = [parser.parse(t) for t in texts]
            if labels[1] is not None:
                return labels[0] == labels[1]
        return " ".join(texts[0].split()) == " ".join(texts[1].split())

    def sample(route: Route, agreed: bool) -> None:
        metrics.agreement.labels(route.workload_id, route.phase, str(agreed).lower()).inc()
        try:
            routes.add_sample(route, agree=agreed)
        except Exception as exc:  # noqa: BLE001 - monitoring never fails serving
            log.warning("cannot record an agreement sample for %s: %s", route.workload_id, exc)

    static_prompts: dict[str, StaticPrompt] = {}  # by sha256: parsed once per route, not per request

    def for_student(route: Route, body: dict[str, Any]) -> dict[str, Any] | None:
        """The request as the student learned it, or None when its prompt is not the one the student was
        trained on (a changed teacher prompt must never silently reach a student trained on the old one).
        Pruned students get the static part replaced by their tag; others get the request unchanged."""
        if not route.static_prompt:
            return body
        sha = route.static_prompt["sha256"]
        static = static_prompts.get(sha) or static_prompts.setdefault(sha, StaticPrompt.model_validate(route.static_prompt))
        stripped = strip_static(body["messages"], static, route.prompt_tag or "")
        if stripped is None:
            metrics.prompt_mismatch.labels(route.workload_id).inc()
            return None
        return {**body, "messages": stripped} if route.prompt_tag else body

    async def shadow(route: Route, body: dict[str, Any], teacher_answer: dict[str, Any]) -> None:
        """Shadow phase: the student answers in the background; only the comparison is kept."""
        student_body = for_student(route, body)
        if student_body is None:
            return
        student = await student_chat(route, student_body)
        sample(route, student is not None and agree(route.workload_id, student, teacher_answer))

    async def monitor(route: Route, client: str, upstream_body: dict[str, Any], student: dict[str, Any]) -> None:
        """Canary/full: the teacher also answers a sample (logged: the flywheel keeps learning) to watch agreement."""
        try:
            response = await app.state.upstream.post("/chat/completions", json={**upstream_body, "stream": False})
        except httpx.HTTPError as exc:
            log.warning("monitoring call to the teacher failed: %s", exc)
            return
        if response.status_code == 200:
            teacher_answer = response.json()
            record(route.workload_id, client, {**upstream_body, "stream": False}, teacher_answer)
            sample(route, agree(route.workload_id, student, teacher_answer))

    def confident(route: Route, answer: dict[str, Any]) -> bool:
        """A selective route lets the student answer only at or above the threshold its decision chose."""
        if not route.cascade:
            return True
        threshold = route.cascade.get("threshold")
        confidence = (answer["choices"][0].get("flywheel") or {}).get("confidence")
        return threshold is not None and confidence is not None and confidence >= threshold

    def student_answers(route: Route) -> bool:
        if route.candidate is None or route.student_kind not in CHAT_STUDENTS:
            return False
        return route.phase == "full" or (route.phase == "canary" and random.uniform(0, 100) < route.canary_percent)

    async def student_chat(route: Route, body: dict[str, Any]) -> dict[str, Any] | None:
        """The student's answer, or None after a student failure (the teacher then answers)."""
        try:
            return await run_in_threadpool(backend.chat, route, body)
        except Exception as exc:  # noqa: BLE001 - any student failure falls back to the teacher
            log.warning("student %s failed for %s, the teacher answers: %s", route.candidate, route.workload_id, exc)
            metrics.fallbacks.labels(route.workload_id).inc()
            return None

    async def stream_chat(workload: str, client: str, upstream_body: dict[str, Any], started: float, route: Route,
                          body: dict[str, Any]) -> Any:
        upstream = app.state.upstream
        request = upstream.build_request("POST", "/chat/completions", json=upstream_body)
        try:
            response = await upstream.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise GatewayError(502, f"the teacher upstream failed: {type(exc).__name__}: {exc}", "upstream_error") from None
        if response.status_code != 200:
            text = (await response.aread()).decode(errors="replace")
            await response.aclose()
            try:
                payload = json.loads(text)
            except json.JSONDecodeError:
                payload = {"error": {"message": text[:500], "type": "upstream_error"}}
            return JSONResponse(payload, response.status_code, headers=served_headers(route.phase))

        async def relay() -> AsyncIterator[bytes]:
            assembler = StreamAssembler()
            try:
                async for chunk in response.aiter_raw():
                    assembler.feed(chunk)
                    yield chunk
            finally:
                # In `finally`: a client that closes after the last chunk it needs (the openai client does)
                # stops this generator at a `yield`; the teacher's answer is complete and must still be logged.
                await response.aclose()
                assembled = assembler.response()
                complete = bool(assembled["choices"]) and all(c.get("finish_reason") for c in assembled["choices"])
                if complete:
                    record(workload, client, upstream_body, assembled)
                    usage.add(workload, "teacher", assembled)
                    if route.phase == "shadow" and route.student_kind in CHAT_STUDENTS:
                        spawn(shadow(route, body, assembled))
                metrics.requests.labels("chat", workload, "teacher", "200" if complete else "499").inc()
                metrics.latency.labels("chat", "teacher").observe(time.perf_counter() - started)

        return StreamingResponse(relay(), media_type="text/event-stream", headers=served_headers(route.phase))

    def as_events(answer: dict[str, Any]) -> Any:
        """A complete answer as the OpenAI stream format (the student's answer is computed before the first byte,
        so a student failure can still fall back to the teacher)."""
        base = {"id": answer["id"], "object": "chat.completion.chunk", "created": answer["created"],
                "model": answer["model"]}
        content = answer["choices"][0]["message"]["content"]
        yield f"data: {json.dumps(base | {'choices': [{'index': 0, 'delta': {'role': 'assistant', 'content': content}, 'finish_reason': None}]})}\n\n"
        yield f"data: {json.dumps(base | {'choices': [{'index': 0, 'delta': {}, 'finish_reason': 'stop'}]})}\n\n"
        yield "data: [DONE]\n\n"

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Any:
        started = time.perf_counter()
        body = await body_of(request)
        workload, client = caller(request, body)
        if "input" not in body:
            raise GatewayError(400, "`input` is required", param="input")
        route = routes.get(workload)
        if route.student_kind == "embedding_distill" and (route.phase == "full" or (
                route.phase == "canary" and random.uniform(0, 100) < route.canary_percent)):
            inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
            try:
                payload = await run_in_threadpool(backend.embed, route, [str(i) for i in inputs], body.get("dimensions"))
                metrics.requests.labels("embeddings", workload, "student", "200").inc()
                usage.add(workload, "student", payload)
                return JSONResponse(payload, 200, headers=served_headers(route.phase, "student"))
            except Exception as exc:  # noqa: BLE001
                log.warning("embedding student %s failed, the teacher answers: %s", route.candidate, exc)
                metrics.fallbacks.labels(workload).inc()
        teacher_model = settings.teacher.embedding_model or settings.teacher.model
        upstream_body = {k: v for k, v in body.items() if k != "metadata"} | {"model": teacher_model}
        response = await teacher_call("/embeddings", upstream_body)
        payload = response.json()
        if response.status_code == 200:
            record(workload, client, {"model": teacher_model, "input": body["input"]},
                   {"data": payload.get("data", [])})
            usage.add(workload, "teacher", payload)
        metrics.requests.labels("embeddings", workload, "teacher", str(response.status_code)).inc()
        metrics.latency.labels("embeddings", "teacher").observe(time.perf_counter() - started)
        return JSONResponse(payload, response.status_code, headers=served_headers(route.phase))

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(metrics.registry).decode(), media_type="text/plain; version=0.0.4")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
