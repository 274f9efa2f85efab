"""Exact (Clopper-Pearson) one-sided bounds of a binomial proportion: what the selective guarantee
and the route controller judge agreement and coverage by."""

from __future__ import annotations


def binomial_lower_bound(successes: int, trials: int, confidence: float) -> float:
    """One-sided lower bound at `confidence` (0 when there are no successes or no trials)."""
    if trials <= 0 or successes <= 0:
        return 0.0
    from scipy.stats import beta

    return float(beta.ppf(1 - confidence, successes, trials - successes + 1))


def binomial_upper_bound(successes: int, trials: int, confidence: float) -> float:
    """One-sided upper bound at `confidence` (1 when every trial succeeded or there are none)."""
    if trials <= 0 or successes >= trials:
        return 1.0
    from scipy.stats import beta

    return float(beta.ppf(confidence, successes + 1, trials - successes))
