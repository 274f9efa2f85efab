"""`POST /v1/embeddings`: an embedding student answers when the route says so (routing.py) and it can;
otherwise the teacher answers and the call is logged (the texts and the vectors: what distillation needs)."""

from __future__ import annotations

import time
from typing import Any

from fastapi.responses import Response

from services.deployment.gateway import routing
from services.deployment.gateway.protocol import Caller, EmbeddingRequest, json_response
from services.deployment.gateway.serving import Serving, served_headers

EMBEDDINGS = "/embeddings"


class EmbeddingService(Serving):
    endpoint = "embeddings"

    async def create(self, request: EmbeddingRequest, caller: Caller) -> Response:
        """Answer one embeddings request."""
        started = time.perf_counter()
        route = self.routes.get(caller.workload)
        if routing.student_first(route, "embeddings", self.rng):  # one canary draw per request
            inputs = request.input if isinstance(request.input, list) else [request.input]
            answer = await self.ask_student(route, self.backend.embed, [str(i) for i in inputs], request.dimensions)
            if answer is not None:
                self.student_served(caller, answer, started)
                return json_response(answer, 200, served_headers(route.phase, "student"))
        teacher_model = self.settings.teacher.embedding_model or self.settings.teacher.model
        reply = await self.upstream.post(EMBEDDINGS, request.upstream_body(teacher_model))

        def answered(answer: dict[str, Any]) -> None:
            self.record(caller, {"model": teacher_model, "input": request.sent["input"]},
                        {"data": answer.get("data", [])})

        return self.teacher_response(caller, route, reply, started, answered)
