"""`POST /v1/chat/completions`: the route's student answers when the route says so (routing.py) and
it can; otherwise the teacher answers, streamed or not, and its answer is logged. Student and teacher
are compared in the background: in `shadow` the student answers each teacher-served request, in
`canary`/`full` the teacher answers `monitor_share` of the student-served ones (logged too)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any

import pydantic_core
from fastapi.responses import Response, StreamingResponse

from services.deployment.gateway import routing
from services.deployment.gateway.protocol import Caller, ChatCompletionRequest, GatewayError, error_body, json_response
from services.deployment.gateway.routing import Endpoint
from services.deployment.gateway.serving import Serving, ServingParts, failure_reason, served_headers
from services.deployment.gateway.streaming import StreamAssembler
from services.deployment.gateway.upstream import (
    StreamBroken,
    TeacherReply,
    TeacherStream,
    TeacherUnavailable,
)
from services.deployment.routes import Route
from services.domain.labels import LabelParser

log = logging.getLogger(__name__)
CHAT = "/chat/completions"


class ChatService(Serving):
    endpoint = "chat"

    def __init__(self, parts: ServingParts) -> None:
        super().__init__(parts)
        self.static_prompts = routing.StaticPrompts()
        self._monitor_share: dict[str, float] = {}
        self._parsers: dict[str, LabelParser | None] = {}
        self._background: set[asyncio.Task[None]] = set()

    async def create(self, request: ChatCompletionRequest, caller: Caller) -> Response:
        """Answer one chat completion request."""
        started = time.perf_counter()
        self.admit(caller)
        route = self.routes.get(caller.workload)
        upstream_body = request.upstream_body(self.settings.teacher.model)
        if routing.student_first(route, "chat", self.rng):  # one canary draw per request
            answer = await self.student_answer(route, request.sent)
            if answer is not None:
                return self.student_response(caller, route, upstream_body, answer, started, stream=bool(request.stream))
        if request.stream:
            return await self.stream_teacher(caller, route, request, upstream_body, started)
        try:
            reply = await self.upstream.post(CHAT, upstream_body, self.policy(caller.workload), caller.workload)
        except TeacherUnavailable as exc:
            return await self.stand_in(caller, route, request, upstream_body, started, exc)
        if reply.failed:
            return await self.stand_in(caller, route, request, upstream_body, started, reply)

        def answered(answer: dict[str, Any]) -> None:
            self.record(caller, upstream_body, answer)
            if routing.shadows(route, "chat"):
                self.spawn(self.shadow(route, request.sent, answer))

        return self.teacher_response(caller, route, reply, started, answered)

    async def stand_in(self, caller: Caller, route: Route, request: ChatCompletionRequest, upstream_body: dict[str, Any],
                       started: float, failure: TeacherUnavailable | TeacherReply) -> Response:
        """The teacher could not answer: the route's student answers if it can (routing.stands_in), else
        the client gets the teacher's failure (its error as sent, or a 502/504 of ours)."""
        why = failure_reason(failure)
        answer = await self.stand_in_answer(route, request.sent, "chat")
        if answer is not None:
            self.fell_back(caller, route, why)
            return self.student_response(caller, route, upstream_body, answer, started, stream=bool(request.stream),
                                         served_by="student-fallback")
        return self.teacher_failed(caller, route, failure, started)

    async def stand_in_answer(self, route: Route, body: dict[str, Any], endpoint: Endpoint) -> dict[str, Any] | None:
        """The answer of a deployed student standing in for a failed teacher (routing.stands_in; whatever its
        confidence), or None when there is no such student, the prompt is not its own, or it failed too."""
        if not routing.stands_in(route, endpoint):
            return None
        student_body = routing.student_body(route, body, self.static_prompts.of(route))
        return None if student_body is None else await self.ask_student(route, self.backend.chat, student_body)

    async def student_answer(self, route: Route, body: dict[str, Any]) -> dict[str, Any] | None:
        """The student's answer, or None when the teacher must answer instead: the prompt is not the one the
        student learned, the student failed, or it is less confident than the route's threshold."""
        student_body = routing.student_body(route, body, self.static_prompts.of(route))
        if student_body is None:
            self.metrics.prompt_mismatch.labels(route.workload_id).inc()
            return None
        answer = await self.ask_student(route, self.backend.chat, student_body)
        reason = routing.fallback(route, answer)
        if reason == "not_confident":
            self.metrics.cascade.labels(route.workload_id).inc()
        if route.cascade:
            self.usage.add_route(route.workload_id, route.since, served=reason is None)
        return answer if reason is None else None

    def student_response(self, caller: Caller, route: Route, upstream_body: dict[str, Any], answer: dict[str, Any],
                         started: float, *, stream: bool, served_by: str = "student") -> Response:
        if served_by == "student" and routing.monitor_draw(self.monitor_share(caller.workload), self.rng):
            self.spawn(self.monitor(route, caller, upstream_body, answer))
        self.student_served(caller, answer, started, served_by)
        headers = served_headers(route.phase, served_by)
        if stream:
            return StreamingResponse(as_events(answer), media_type="text/event-stream", headers=headers)
        return json_response(answer, 200, headers)

    async def stream_teacher(self, caller: Caller, route: Route, request: ChatCompletionRequest,
                             upstream_body: dict[str, Any], started: float) -> Response:
        """The teacher's stream relayed chunk by chunk as it comes; reassembled and logged once complete."""
        try:
            response = await self.upstream.stream(CHAT, upstream_body, self.policy(caller.workload), caller.workload)
        except TeacherUnavailable as exc:
            return await self.stand_in(caller, route, request, upstream_body, started, exc)
        if isinstance(response, TeacherReply):  # the teacher refused: its error, whole (nothing to log)
            if response.failed:
                return await self.stand_in(caller, route, request, upstream_body, started, response)
            return self.teacher_response(caller, route, response, started, lambda _: None)
        return StreamingResponse(self.relay(response, caller, route, request, upstream_body, started),
                                 media_type="text/event-stream", headers=served_headers(route.phase))

    async def relay(self, response: TeacherStream, caller: Caller, route: Route, request: ChatCompletionRequest,
                    upstream_body: dict[str, Any], started: float) -> AsyncIterator[bytes]:
        assembler = StreamAssembler()
        broken: str | None = None
        try:
            async for chunk in response.chunks():
                assembler.feed(chunk)
                yield chunk
        except StreamBroken as exc:  # the teacher broke off (dropped, or silent past the timeout)
            broken = f"the teacher's stream broke off: {exc}"
            log.warning("%s (%s)", broken, caller.workload)
            yield stream_error(broken)
        finally:
            # In `finally`: a client that closes after the last chunk it needs (the openai client does) stops
            # this generator at a `yield`; the teacher's answer is complete and must still be logged.
            await response.aclose()
            assembled = assembler.response()
            complete = bool(assembled["choices"]) and all(c.get("finish_reason") for c in assembled["choices"])
            if complete:
                self.record(caller, upstream_body, assembled)
                self.counted(caller, "teacher", assembled)
                if routing.shadows(route, "chat"):
                    self.spawn(self.shadow(route, request.sent, assembled))
            status = 200 if complete else 502 if broken else 499
            self.metrics.served("chat", caller.workload, "teacher", status, time.perf_counter() - started)

    # Background comparisons of student and teacher (never awaited by a request).

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self, timeout: float = 5.0) -> None:
        """Let background comparisons still running finish (at shutdown, before the upstream closes)."""
        if self._background:
            await asyncio.wait(set(self._background), timeout=timeout)

    async def shadow(self, route: Route, body: dict[str, Any], teacher_answer: dict[str, Any]) -> None:
        """Shadow phase: the student answers in the background; only the comparison is kept."""
        student_body = routing.student_body(route, body, self.static_prompts.of(route))
        if student_body is None:
            self.metrics.prompt_mismatch.labels(route.workload_id).inc()
            return
        student = await self.ask_student(route, self.backend.chat, student_body)
        self.sample(route, student is not None and self.agree(route.workload_id, student, teacher_answer))

    async def monitor(self, route: Route, caller: Caller, upstream_body: dict[str, Any],
                      student: dict[str, Any]) -> None:
        """Canary/full: the teacher also answers a sample (logged: the flywheel keeps learning) to watch agreement."""
        body = {**upstream_body, "stream": False}
        try:
            reply = await self.upstream.post(CHAT, body, self.policy(caller.workload), caller.workload)
        except GatewayError as exc:
            log.warning("monitoring call to the teacher failed: %s", exc.message)
            return
        teacher_answer = reply.json() if reply.status == 200 else None
        if teacher_answer is not None:
            self.record(caller, body, teacher_answer)
            self.sample(route, self.agree(route.workload_id, student, teacher_answer))

    def sample(self, route: Route, agreed: bool) -> None:
        self.metrics.agreement.labels(route.workload_id, route.phase, str(agreed).lower()).inc()
        try:
            self.routes.add_sample(route, agree=agreed)
        except Exception as exc:  # noqa: BLE001 - monitoring never fails serving
            log.warning("cannot record an agreement sample for %s: %s", route.workload_id, exc)

    def agree(self, workload: str, student: dict[str, Any], teacher: dict[str, Any]) -> bool:
        if workload not in self._parsers:
            self._parsers[workload] = routing.label_parser(self.settings.workload(workload))
        return routing.agree(student, teacher, self._parsers[workload])

    def monitor_share(self, workload: str) -> float:
        """The workload's `monitor_share` (its promotion policy is resolved once, not per request)."""
        share = self._monitor_share.get(workload)
        if share is None:
            share = self._monitor_share[workload] = self.settings.promotion_policy(workload).monitor_share
        return share


def stream_error(message: str) -> bytes:
    """An error inside an event stream, as OpenAI sends one (the official client raises it as an APIError)."""
    return b"data: " + pydantic_core.to_json(error_body(message, "upstream_error", code="stream_broken")) + b"\n\n"


def as_events(answer: dict[str, Any]) -> Iterator[bytes]:
    """A complete answer in the OpenAI stream format (the student's answer is computed before the first
    byte, so a student failure can still fall back to the teacher)."""
    base = {"id": answer["id"], "object": "chat.completion.chunk", "created": answer["created"], "model": answer["model"]}
    content = answer["choices"][0]["message"]["content"]
    first = {"index": 0, "delta": {"role": "assistant", "content": content}, "finish_reason": None}
    yield b"data: " + pydantic_core.to_json(base | {"choices": [first]}) + b"\n\n"
    yield b"data: " + pydantic_core.to_json(base | {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}) + b"\n\n"
    yield b"data: [DONE]\n\n"
