"""What the serving classes (serving_chat.py, serving_embeddings.py) share: the parts they are built
with once at start-up, asking a student (a failure hands the request to the teacher), and answering
with the teacher's reply: its bytes go to the client as the teacher sent them, and the answer is parsed,
logged and counted after the response has gone."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any, ClassVar

from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from starlette.background import BackgroundTask

from services.deployment.backends.base import ServingBackend
from services.deployment.gateway.metrics import GatewayMetrics
from services.deployment.gateway.protocol import JSON, Caller
from services.deployment.gateway.routing import Endpoint
from services.deployment.gateway.upstream import TeacherReply, TeacherUpstream
from services.deployment.gateway.usage import UsageCounter
from services.deployment.routes import Route, RouteStore
from services.deployment.traffic_log import TrafficLogger
from services.domain.settings import Settings

log = logging.getLogger(__name__)


def served_headers(phase: str = "teacher", served_by: str = "teacher") -> dict[str, str]:
    """Who answered, and the route's phase, on every answer."""
    return {"X-Flywheel-Served-By": served_by, "X-Flywheel-Route-Phase": phase}


class Serving:
    """One endpoint's service: built once at start-up with everything it talks to."""

    endpoint: ClassVar[Endpoint]

    def __init__(self, settings: Settings, *, routes: RouteStore, backend: ServingBackend, metrics: GatewayMetrics,
                 usage: UsageCounter, traffic: TrafficLogger, upstream: TeacherUpstream,
                 rng: random.Random | None = None) -> None:
        self.settings, self.routes, self.backend, self.metrics = settings, routes, backend, metrics
        self.usage, self.traffic, self.upstream = usage, traffic, upstream
        self.rng = rng or random.Random()

    def record(self, caller: Caller, request: dict[str, Any], response: dict[str, Any]) -> None:
        """Log one teacher call for the flywheel (queued; `TrafficLogger` sends it from its own thread)."""
        self.traffic.log({"workload_id": caller.workload, "client_id": caller.client, "timestamp": time.time(),
                          "request": request, "response": response})

    async def ask_student(self, route: Route, answer: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any] | None:
        """The student's answer (`answer(route, *args)`, off the event loop), or None after a student failure."""
        try:
            return await run_in_threadpool(answer, route, *args)
        except Exception as exc:  # noqa: BLE001 - any student failure falls back to the teacher
            log.warning("student %s failed for %s (%s), the teacher answers: %s", route.candidate, route.workload_id,
                        self.endpoint, exc)
            self.metrics.fallbacks.labels(route.workload_id).inc()
            return None

    def student_served(self, caller: Caller, answer: dict[str, Any], started: float) -> None:
        self.usage.add(caller.workload, "student", answer)
        self.metrics.served(self.endpoint, caller.workload, "student", 200, time.perf_counter() - started)

    def teacher_response(self, caller: Caller, route: Route, reply: TeacherReply, started: float,
                         answered: Callable[[dict[str, Any]], None]) -> Response:
        """The teacher's reply as it sent it; after it has gone, a successful answer is parsed, counted and
        handed to `answered` (which logs it)."""

        async def after() -> None:
            try:
                answer = reply.json() if reply.status == 200 else None
                if answer is not None:
                    answered(answer)
                    self.usage.add(caller.workload, "teacher", answer)
                self.metrics.served(self.endpoint, caller.workload, "teacher", reply.status,
                                    time.perf_counter() - started)
            except Exception:  # the client has its answer; a bookkeeping bug is logged, not raised into the server
                log.exception("cannot log or count a teacher answer for %s", caller.workload)

        return Response(reply.body_bytes(), reply.status, served_headers(route.phase), media_type=JSON,
                        background=BackgroundTask(after))
