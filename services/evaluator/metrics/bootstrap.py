"""Percentile bootstrap shared by every metric: fixed seed, vectorised, chunked to bound memory."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sized

import numpy as np

from services.domain.errors import InsufficientData

# Index matrices above this many cells are built in chunks (8 bytes each: ~32 MB per chunk).
_MAX_CELLS = 4_000_000


def resample_indices(n: int, samples: int, *, seed: int) -> Iterator[np.ndarray]:
    """Yield (chunk, n) arrays of resampled row indices, `samples` rows in all, reproducible for a seed."""
    rng = np.random.default_rng(seed)
    chunk = max(1, _MAX_CELLS // max(n, 1))
    done = 0
    while done < samples:
        size = min(chunk, samples - done)
        yield rng.integers(0, n, size=(size, n))
        done += size


def percentile_interval(stats: np.ndarray, confidence: float) -> tuple[float, float] | None:
    """The central `confidence` interval of bootstrap replicates; None when no replicate is finite."""
    finite = stats[np.isfinite(stats)]
    if finite.size == 0:
        return None
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(finite, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def bootstrap_statistic(
    n: int,
    statistic: Callable[[np.ndarray], np.ndarray],
    *,
    samples: int,
    confidence: float,
    seed: int,
) -> tuple[float, float] | None:
    """CI of a statistic computed row-wise over (chunk, n) index matrices; None when samples or n is 0."""
    if samples <= 0 or n <= 0:
        return None
    stats = np.concatenate([statistic(idx) for idx in resample_indices(n, samples, seed=seed)])
    return percentile_interval(stats, confidence)


def bootstrap_mean(
    values: np.ndarray | list[float], *, samples: int, confidence: float, seed: int
) -> tuple[float, float] | None:
    """CI of the mean of per-item values (accuracy, per-query recall, judge scores, ...)."""
    arr = np.asarray(values, dtype=np.float64)
    return bootstrap_statistic(
        arr.size, lambda idx: arr[idx].mean(axis=1), samples=samples, confidence=confidence, seed=seed
    )


def require_aligned(reference: Sized, predicted: Sized) -> None:
    """One prediction per reference, and at least one of each."""
    if len(reference) != len(predicted):
        raise ValueError(f"{len(reference)} references but {len(predicted)} predictions")
    if not len(reference):
        raise InsufficientData("no eval records to score")
