"""What the serving classes (serving_chat.py, serving_embeddings.py) share: the parts they are built
with once at start-up, admitting a request under the usage limits, asking a student (a failure hands
the request to the teacher), answering with the teacher's reply (its bytes go to the client as the
teacher sent them; the answer is parsed, logged and counted after the response has gone), and the
student's fallback when the teacher cannot answer."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from starlette.background import BackgroundTask

from services.deployment.backends.base import ServingBackend
from services.deployment.gateway.limits import Limiter, LimitExceeded
from services.deployment.gateway.metrics import GatewayMetrics
from services.deployment.gateway.protocol import JSON, Caller, GatewayError
from services.deployment.gateway.retries import CallPolicy
from services.deployment.gateway.routing import Endpoint
from services.deployment.gateway.upstream import TeacherReply, TeacherUnavailable, TeacherUpstream
from services.deployment.gateway.usage import UsageCounter, usage_of
from services.deployment.routes import Route, RouteStore
from services.deployment.traffic_log import TrafficSink
from services.domain.settings import Settings

log = logging.getLogger(__name__)


def served_headers(phase: str = "teacher", served_by: str = "teacher") -> dict[str, str]:
    """Who answered, and the route's phase, on every answer."""
    return {"X-Flywheel-Served-By": served_by, "X-Flywheel-Route-Phase": phase}


@dataclass(frozen=True)
class ServingParts:
    """Everything a service talks to, built once at start-up (app.py) and shared by the endpoints' services."""

    settings: Settings
    routes: RouteStore
    backend: ServingBackend
    metrics: GatewayMetrics
    usage: UsageCounter
    traffic: TrafficSink
    upstream: TeacherUpstream
    limiter: Limiter | None = None
    rng: random.Random | None = None  # canary and monitor draws; None: each service seeds its own


class Serving:
    """One endpoint's service: built once at start-up with everything it talks to."""

    endpoint: ClassVar[Endpoint]

    def __init__(self, parts: ServingParts) -> None:
        self.settings, self.routes, self.backend, self.metrics = parts.settings, parts.routes, parts.backend, parts.metrics
        self.usage, self.traffic, self.upstream, self.limiter = parts.usage, parts.traffic, parts.upstream, parts.limiter
        self.rng = parts.rng or random.Random()
        self._policies: dict[str, CallPolicy] = {}

    def admit(self, caller: Caller) -> None:
        """Count the request against its key's and workload's limits; a 429 with Retry-After over one."""
        if self.limiter is None:
            return
        try:
            self.limiter.check(caller.key_name, caller.workload)
        except LimitExceeded as exc:
            self.metrics.limited.labels(caller.workload, exc.scope, exc.limit).inc()
            raise GatewayError(429, str(exc), "requests" if exc.limit == "requests_per_minute" else "tokens",
                               code="rate_limit_exceeded", headers={"Retry-After": str(exc.retry_after_s)}) from None

    def counted(self, caller: Caller, served_by: str, answer: dict[str, Any] | None) -> None:
        """An answer's requests and tokens: for the dashboard's traffic counts and the tokens-per-day limits."""
        self.usage.add(caller.workload, served_by, answer)
        if self.limiter is not None and answer is not None:
            self.limiter.record(caller.key_name, caller.workload, sum(usage_of(answer)))

    def policy(self, workload: str) -> CallPolicy:
        """How the teacher is called for this workload (resolved once, not per request)."""
        policy = self._policies.get(workload)
        if policy is None:
            policy = self._policies[workload] = CallPolicy.of(self.settings, workload)
        return policy

    def fell_back(self, caller: Caller, route: Route, why: str) -> None:
        """The teacher could not answer (`why`) and the route's student did: counted and logged."""
        log.warning("the teacher could not answer a %s request of %s (%s): student %s answered", self.endpoint,
                    caller.workload, why, route.candidate)
        self.metrics.student_fallbacks.labels(caller.workload, self.endpoint, why).inc()

    def record(self, caller: Caller, request: dict[str, Any], response: dict[str, Any]) -> None:
        """Log one teacher call for the flywheel (queued; sent from a child process or a thread: traffic_log.TrafficSink)."""
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

    def teacher_failed(self, caller: Caller, route: Route, failure: TeacherUnavailable | TeacherReply,
                       started: float) -> Response:
        """No student could stand in for the failed teacher: the client gets the teacher's error as it sent it,
        or our 502/504 (raised)."""
        self.metrics.unavailable.labels(caller.workload, self.endpoint).inc()
        if isinstance(failure, TeacherUnavailable):
            self.metrics.served(self.endpoint, caller.workload, "teacher", failure.status, time.perf_counter() - started)
            raise failure
        return self.teacher_response(caller, route, failure, started, lambda _: None)

    def student_served(self, caller: Caller, answer: dict[str, Any], started: float,
                       served_by: str = "student") -> None:
        self.counted(caller, "student", answer)
        self.metrics.served(self.endpoint, caller.workload, served_by, 200, time.perf_counter() - started)

    def teacher_response(self, caller: Caller, route: Route, reply: TeacherReply, started: float,
                         answered: Callable[[dict[str, Any]], None]) -> Response:
        """The teacher's reply as it sent it; after it has gone, a successful answer is parsed, counted and
        handed to `answered` (which logs it)."""

        async def after() -> None:
            try:
                answer = reply.json() if reply.status == 200 else None
                if answer is not None:
                    answered(answer)
                    self.counted(caller, "teacher", answer)
                self.metrics.served(self.endpoint, caller.workload, "teacher", reply.status,
                                    time.perf_counter() - started)
            except Exception:  # the client has its answer; a bookkeeping bug is logged, not raised into the server
                log.exception("cannot log or count a teacher answer for %s", caller.workload)

        headers = served_headers(route.phase)
        if reply.retry_after is not None:
            headers["Retry-After"] = reply.retry_after
        return Response(reply.body_bytes(), reply.status, headers, media_type=JSON, background=BackgroundTask(after))


def failure_reason(failure: TeacherUnavailable | TeacherReply) -> str:
    """Why the teacher did not answer, for the fallback metric: upstream_timeout, upstream_unreachable, status_N."""
    return (failure.code or "unavailable") if isinstance(failure, TeacherUnavailable) else f"status_{failure.status}"
