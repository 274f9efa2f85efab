"""`POST /v1/embeddings`: an embedding student answers when the route says so (routing.py) and it can;
otherwise the teacher answers and the call is logged (the texts and the vectors: what distillation needs).
When the teacher cannot answer, a deployed student stands in (routing.stands_in)."""

from __future__ import annotations

import time
from typing import Any

from fastapi.responses import Response

from services.deployment.gateway import routing
from services.deployment.gateway.protocol import Caller, EmbeddingRequest, json_response
from services.deployment.gateway.serving import Serving, failure_reason, served_headers
from services.deployment.gateway.upstream import TeacherReply, TeacherUnavailable
from services.deployment.routes import Route

EMBEDDINGS = "/embeddings"


class EmbeddingService(Serving):
    endpoint = "embeddings"

    async def create(self, request: EmbeddingRequest, caller: Caller) -> Response:
        """Answer one embeddings request."""
        started = time.perf_counter()
        self.admit(caller)
        route = self.routes.get(caller.workload)
        if routing.student_first(route, "embeddings", self.rng):  # one canary draw per request
            answer = await self.student_answer(route, request)
            if answer is not None:
                self.student_served(caller, answer, started)
                return json_response(answer, 200, served_headers(route.phase, "student"))
        teacher_model = self.settings.teacher.embedding_model or self.settings.teacher.model
        try:
            reply = await self.upstream.post(EMBEDDINGS, request.upstream_body(teacher_model),
                                             self.policy(caller.workload), caller.workload)
        except TeacherUnavailable as exc:
            return await self.stand_in(caller, route, request, started, exc)
        if reply.failed:
            return await self.stand_in(caller, route, request, started, reply)

        def answered(answer: dict[str, Any]) -> None:
            logged = {"model": teacher_model, "input": request.sent["input"]}
            if request.input_type is not None:
                logged["input_type"] = request.input_type
            self.record(caller, logged, {"data": answer.get("data", [])})

        return self.teacher_response(caller, route, reply, started, answered)

    async def student_answer(self, route: Route, request: EmbeddingRequest) -> dict[str, Any] | None:
        inputs = request.input if isinstance(request.input, list) else [request.input]
        return await self.ask_student(route, self.backend.embed, [str(i) for i in inputs], request.dimensions)

    async def stand_in(self, caller: Caller, route: Route, request: EmbeddingRequest, started: float,
                       failure: TeacherUnavailable | TeacherReply) -> Response:
        """The teacher could not answer: a deployed student answers if it can, else the teacher's failure."""
        why = failure_reason(failure)
        answer = await self.student_answer(route, request) if routing.stands_in(route, "embeddings") else None
        if answer is not None:
            self.fell_back(caller, route, why)
            self.student_served(caller, answer, started, "student-fallback")
            return json_response(answer, 200, served_headers(route.phase, "student-fallback"))
        return self.teacher_failed(caller, route, failure, started)
