"""`POST /v1/responses` (OpenAI's Responses API): the teacher answers, streamed or not, its bytes forwarded as
it sent them, and the call is logged with its chat view (services/domain/responses_api.py) so datasets, ICL
and evaluation read it like any chat record; the body as sent and the response object are kept beside it.
When the route says so (routing.py) the route's chat student answers the chat view, and its answer goes
back as a Responses object (streamed as the events OpenAI sends). Shadow and monitoring comparisons run
like chat's, through the chat service.

Not logged (counted in `flywheel_gateway_responses_not_logged_total`), always the teacher's: a request with
`previous_response_id` (the conversation lives in the teacher's store, we cannot see it), a request or answer
with no chat equivalent (built-in tools, item references), an answer that did not complete.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pydantic_core
from fastapi.responses import Response, StreamingResponse

from services.deployment.gateway import routing
from services.deployment.gateway.protocol import Caller, GatewayError, ResponsesRequest, error_body, json_response
from services.deployment.gateway.serving import Serving, ServingParts, failure_reason, served_headers
from services.deployment.gateway.serving_chat import ChatService
from services.deployment.gateway.upstream import (
    StreamBroken,
    TeacherReply,
    TeacherStream,
    TeacherUnavailable,
)
from services.deployment.routes import Route
from services.domain import responses_api
from services.domain.responses_api import NotChatShaped

log = logging.getLogger(__name__)
RESPONSES = "/responses"


class ResponsesService(Serving):
    endpoint = "responses"

    def __init__(self, parts: ServingParts, *, chat: ChatService) -> None:
        super().__init__(parts)
        self.chat = chat  # the student answers, and answers are compared, as for chat completions

    async def create(self, request: ResponsesRequest, caller: Caller) -> Response:
        """Answer one Responses API request."""
        started = time.perf_counter()
        self.admit(caller)
        route = self.routes.get(caller.workload)
        upstream_body = request.upstream_body(self.settings.teacher.model)
        chat_body = self.chat_view(request, caller)
        if chat_body is not None and routing.student_first(route, "responses", self.rng):
            answer = await self.chat.student_answer(route, chat_body)
            if answer is not None:
                return self.student_response(caller, route, request, upstream_body, chat_body, answer, started)
        if request.stream:
            return await self.stream_teacher(caller, route, request, upstream_body, chat_body, started)
        try:
            reply = await self.upstream.post(RESPONSES, upstream_body, self.policy(caller.workload), caller.workload)
        except TeacherUnavailable as exc:
            return await self.stand_in(caller, route, request, upstream_body, chat_body, started, exc)
        if reply.failed:
            return await self.stand_in(caller, route, request, upstream_body, chat_body, started, reply)
        return self.teacher_response(caller, route, reply, started,
                                     lambda answer: self.log_call(caller, route, upstream_body, chat_body, answer))

    async def stand_in(self, caller: Caller, route: Route, request: ResponsesRequest, upstream_body: dict[str, Any],
                       chat_body: dict[str, Any] | None, started: float,
                       failure: TeacherUnavailable | TeacherReply) -> Response:
        """The teacher could not answer: a deployed chat student answers the chat view if it can (as for chat),
        else the client gets the teacher's failure."""
        answer = None if chat_body is None else await self.chat.stand_in_answer(route, chat_body, "responses")
        if answer is not None:
            self.fell_back(caller, route, failure_reason(failure))
            return self.student_response(caller, route, request, upstream_body, chat_body or {}, answer, started,
                                         served_by="student-fallback")
        return self.teacher_failed(caller, route, failure, started)

    def chat_view(self, request: ResponsesRequest, caller: Caller) -> dict[str, Any] | None:
        """The request as a chat completion request, or None (counted) when it is not one we log or route."""
        if request.previous_response_id is not None:
            self.metrics.responses_not_logged.labels(caller.workload, "previous_response_id").inc()
            return None
        try:
            return responses_api.chat_request(request.sent)
        except NotChatShaped:
            self.metrics.responses_not_logged.labels(caller.workload, "not_chat_shaped").inc()
            return None

    def log_call(self, caller: Caller, route: Route, upstream_body: dict[str, Any], chat_body: dict[str, Any] | None,
                 answer: dict[str, Any]) -> None:
        """Log a teacher answer with its chat view (and compare with the student in shadow)."""
        if chat_body is None:
            return  # counted when the request was read
        if answer.get("status") != "completed":
            self.metrics.responses_not_logged.labels(caller.workload, "not_completed").inc()
            return
        try:
            chat_answer = responses_api.chat_response(answer)
        except NotChatShaped:
            self.metrics.responses_not_logged.labels(caller.workload, "not_chat_shaped").inc()
            return
        self.traffic.log({"workload_id": caller.workload, "client_id": caller.client, "timestamp": time.time(),
                          "request": chat_body | {"model": upstream_body["model"]}, "response": chat_answer,
                          "responses_api": {"request": upstream_body, "response": answer}})
        if routing.shadows(route, "responses"):
            self.chat.spawn(self.chat.shadow(route, chat_body, chat_answer))

    def student_response(self, caller: Caller, route: Route, request: ResponsesRequest, upstream_body: dict[str, Any],
                         chat_body: dict[str, Any], answer: dict[str, Any], started: float,
                         served_by: str = "student") -> Response:
        if served_by == "student" and routing.monitor_draw(self.chat.monitor_share(caller.workload), self.rng):
            self.chat.spawn(self.monitor(route, caller, upstream_body, chat_body, answer))
        self.student_served(caller, answer, started, served_by)
        response = responses_api.as_response(answer, request.sent)
        headers = served_headers(route.phase, served_by)
        if request.stream:
            return StreamingResponse(responses_api.response_events(response), media_type="text/event-stream",
                                     headers=headers)
        return json_response(response, 200, headers)

    async def stream_teacher(self, caller: Caller, route: Route, request: ResponsesRequest,
                             upstream_body: dict[str, Any], chat_body: dict[str, Any] | None, started: float) -> Response:
        """The teacher's events relayed as they come; its `response.completed` response is logged."""
        try:
            response = await self.upstream.stream(RESPONSES, upstream_body, self.policy(caller.workload),
                                                  caller.workload)
        except TeacherUnavailable as exc:
            return await self.stand_in(caller, route, request, upstream_body, chat_body, started, exc)
        if isinstance(response, TeacherReply):  # the teacher refused: its error, whole (nothing to log)
            if response.failed:
                return await self.stand_in(caller, route, request, upstream_body, chat_body, started, response)
            return self.teacher_response(caller, route, response, started, lambda _: None)
        return StreamingResponse(self.relay(response, caller, route, upstream_body, chat_body, started),
                                 media_type="text/event-stream", headers=served_headers(route.phase))

    async def relay(self, response: TeacherStream, caller: Caller, route: Route, upstream_body: dict[str, Any],
                    chat_body: dict[str, Any] | None, started: float) -> AsyncIterator[bytes]:
        watcher = responses_api.CompletedResponse()
        broken = False
        try:
            async for chunk in response.chunks():
                watcher.feed(chunk)
                yield chunk
        except StreamBroken as exc:  # the teacher broke off (dropped, or silent past the timeout)
            broken = True
            message = f"the teacher's stream broke off: {exc}"
            log.warning("%s (%s)", message, caller.workload)
            yield error_event(message)
        finally:
            # In `finally`: a client may close once it has `response.completed`; the answer must still be logged.
            await response.aclose()
            completed = watcher.finish()
            if completed is not None:
                self.log_call(caller, route, upstream_body, chat_body, completed)
                self.counted(caller, "teacher", completed)
            status = 200 if completed is not None else 502 if broken else 499
            self.metrics.served(self.endpoint, caller.workload, "teacher", status, time.perf_counter() - started)

    async def monitor(self, route: Route, caller: Caller, upstream_body: dict[str, Any], chat_body: dict[str, Any],
                      student: dict[str, Any]) -> None:
        """Canary/full: the teacher also answers a sample (logged) to watch agreement."""
        body = {**upstream_body, "stream": False}
        try:
            reply = await self.upstream.post(RESPONSES, body, self.policy(caller.workload), caller.workload)
        except GatewayError as exc:
            log.warning("monitoring call to the teacher failed: %s", exc.message)
            return
        answer = reply.json() if reply.status == 200 else None
        if answer is None or answer.get("status") != "completed":
            return
        self.log_call(caller, route, body, chat_body, answer)
        try:
            teacher = responses_api.chat_response(answer)
        except NotChatShaped:
            return
        self.chat.sample(route, self.chat.agree(route.workload_id, student, teacher))


def error_event(message: str) -> bytes:
    """A Responses stream's `error` event (OpenAI's fields), with an `error` object the official client raises."""
    error = error_body(message, "upstream_error", code="stream_broken")
    event = {"type": "error", "code": "stream_broken", "message": message, "param": None} | error
    return b"event: error\ndata: " + pydantic_core.to_json(event) + b"\n\n"
