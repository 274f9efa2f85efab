"""The API's Prometheus metrics (one registry per app, so test apps never share counters)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("flywheel_api_requests_total", "API requests.", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("flywheel_api_request_seconds", "API request latency.", ["method", "route"],
                                 registry=self.registry)
        self.ingested = Counter("flywheel_api_log_records_total", "Log records received by POST /api/logs.",
                                ["outcome"], registry=self.registry)
