"""The gateway's Prometheus metrics (`GET /metrics`), in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.deployment.traffic_log import TrafficSink


class GatewayMetrics:
    def __init__(self, logger: TrafficSink) -> None:
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
        self.responses_not_logged = Counter(
            "flywheel_gateway_responses_not_logged_total",
            "Responses API calls answered by the teacher but not logged (reason: previous_response_id, "
            "not_chat_shaped, not_completed).", ["workload", "reason"], registry=self.registry)
        self.agreement = Counter("flywheel_gateway_agreement_total", "Requests answered by student and teacher.",
                                 ["workload", "phase", "agree"], registry=self.registry)
        self.student_fallbacks = Counter(
            "flywheel_gateway_student_fallback_total",
            "Requests the teacher could not answer (timeout, unreachable, 429/5xx after retries), answered by the "
            "route's student.", ["workload", "endpoint", "reason"], registry=self.registry)
        self.teacher_retries = Counter("flywheel_gateway_teacher_retries_total",
                                       "Teacher calls tried again, by what failed (a status, timeout, connection).",
                                       ["workload", "reason"], registry=self.registry)
        self.limited = Counter("flywheel_gateway_limited_total", "Requests refused over a usage limit (429).",
                               ["workload", "scope", "limit"], registry=self.registry)
        self.unavailable = Counter("flywheel_gateway_teacher_unavailable_total",
                                   "Requests the teacher did not answer and no student could (the client got 502/504).",
                                   ["workload", "endpoint"], registry=self.registry)
        spool = Gauge("flywheel_gateway_spool_depth", "Logged calls waiting in the spool file.", registry=self.registry)
        spool.set_function(lambda: logger.spool_depth)

    def served(self, endpoint: str, workload: str, served_by: str, status: int, seconds: float) -> None:
        """One answered request: counted by who answered and its status, and timed."""
        self.requests.labels(endpoint, workload, served_by, str(status)).inc()
        self.latency.labels(endpoint, served_by).observe(seconds)
