"""Per-workload traffic counts (requests and tokens, by who answered), kept in memory by the gateway
and added to the route store every few seconds, so the dashboard and `GET /api/workloads` can show
requests served and the teacher cost a student avoided across gateway replicas and restarts.
A failed flush keeps the counts for the next one; counts are lost only if the process dies between
flushes (at most `interval_s` of traffic), which a dashboard estimate tolerates."""

from __future__ import annotations

import logging
import threading
from typing import Any

from services.deployment.gateway.periodic import PeriodicFlush

log = logging.getLogger(__name__)


def usage_of(answer: dict[str, Any]) -> tuple[int, int]:
    """(input, output) tokens of a chat/embeddings answer (`prompt_tokens`) or a Responses API one (`input_tokens`)."""
    usage = answer.get("usage") or {}
    return (int(usage.get("prompt_tokens") or usage.get("input_tokens") or 0),
            int(usage.get("completion_tokens") or usage.get("output_tokens") or 0))


class UsageCounter:
    def __init__(self, routes: Any, *, interval_s: float = 2.0) -> None:
        self.routes, self.interval_s = routes, interval_s
        self._counts: dict[tuple[str, str], list[int]] = {}
        self._route_counts: dict[tuple[str, float], list[int]] = {}
        self._lock = threading.Lock()
        self._flusher = PeriodicFlush(self.flush, interval_s=interval_s, name="gateway-usage")

    def add(self, workload_id: str, served_by: str, answer: dict[str, Any] | None = None) -> None:
        prompt, completion = usage_of(answer or {})
        with self._lock:
            row = self._counts.setdefault((workload_id, served_by), [0, 0, 0])
            row[0] += 1
            row[1] += prompt
            row[2] += completion

    def add_route(self, workload_id: str, since: float, *, served: bool) -> None:
        """A selective route's student was asked; `served`: it was confident enough to answer."""
        with self._lock:
            row = self._route_counts.setdefault((workload_id, since), [0, 0])
            row[0] += 1
            row[1] += served

    def flush(self) -> None:
        with self._lock:
            counts, self._counts = self._counts, {}
            route_counts, self._route_counts = self._route_counts, {}
        if route_counts:
            try:
                self.routes.add_route_counts({key: (r[0], r[1]) for key, r in route_counts.items()})
            except Exception as exc:  # noqa: BLE001 - counting never fails serving; keep the counts for later
                log.warning("cannot record route coverage counts (kept for the next flush): %s", exc)
                with self._lock:
                    for route_key, row in route_counts.items():
                        kept = self._route_counts.setdefault(route_key, [0, 0])
                        kept[0] += row[0]
                        kept[1] += row[1]
        if not counts:
            return
        try:
            self.routes.add_traffic({key: (r[0], r[1], r[2]) for key, r in counts.items()})
        except Exception as exc:  # noqa: BLE001 - counting never fails serving; keep the counts for later
            log.warning("cannot record gateway traffic counts (kept for the next flush): %s", exc)
            with self._lock:
                for key, row in counts.items():
                    kept = self._counts.setdefault(key, [0, 0, 0])
                    for i in range(3):
                        kept[i] += row[i]

    def start(self) -> UsageCounter:
        self._flusher.start()
        return self

    def close(self) -> None:
        self._flusher.close()
