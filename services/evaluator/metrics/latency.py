"""Latency and throughput of a candidate, from per-request wall times."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from services.domain.errors import InsufficientData
from services.domain.evaluation import LatencyStats


def latency_stats(seconds: Sequence[float], *, wall_s: float | None = None) -> LatencyStats:
    """p50/p95/mean per request in ms; throughput over `wall_s` (batched runs) or else the sum of the times."""
    times = np.asarray(seconds, dtype=np.float64)
    if times.size == 0:
        raise InsufficientData("no timed requests")
    if not np.all(np.isfinite(times)) or np.any(times < 0):
        raise ValueError("request times must be finite and non-negative")
    if wall_s is not None and wall_s <= 0:
        raise ValueError(f"wall_s must be positive, got {wall_s}")
    # Requests run one after another unless the caller says how long the whole (batched) run took.
    elapsed = float(times.sum()) if wall_s is None else wall_s
    p50, p95 = np.percentile(times, [50, 95]) * 1000.0
    return LatencyStats(
        n=int(times.size),
        p50_ms=float(p50),
        p95_ms=float(p95),
        mean_ms=float(times.mean() * 1000.0),
        throughput_per_s=float(times.size / elapsed) if elapsed > 0 else 0.0,
    )
