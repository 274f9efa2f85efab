"""Selective answering with a stated guarantee: the student answers when its confidence is at or
above a threshold, the teacher answers the rest, and "agreement with the teacher >= X on the share
the student serves" holds with confidence 1 - delta on new traffic.

How the threshold is chosen (docs/selective.md):
- `choose_threshold` scans thresholds from the most confident down (an order fixed before looking
  at whether answers agree) and keeps going while the one-sided Clopper-Pearson lower bound of the
  served share's agreement stays at or above the target; it stops at the first failure. This is
  fixed-sequence testing (Learn-then-Test, Angelopoulos et al. 2021): the chosen threshold controls
  the risk at level delta even though it was chosen on the same records. The scan starts at the
  first threshold that serves enough records to pass at all (that depends on the confidences only).
- `selective_report` plans where to start on calibration records (out-of-fold or a split the student was
  not fitted on) by simulating reports of the eval split's size and walking each from every candidate
  start (`plan_start`: the start with the most expected coverage wins), starts fixed-sequence testing on
  the eval records there and walks towards more coverage while the bound holds; it reports the served
  share's agreement and lower bound where the walk stopped, a threshold whose guarantee holds as chosen
  (the walk is a fixed sequence).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from services.domain.bounds import binomial_lower_bound


def agreement_lower_bound(agreed: int, served: int, confidence: float) -> float:
    """One-sided Clopper-Pearson lower bound of the served share's agreement (0 when nothing was served)."""
    return binomial_lower_bound(agreed, served, confidence)


def min_served_for(target: float, confidence: float) -> int:
    """Fewest served records whose lower bound can reach `target` (all of them agreeing): 29 for 0.90 at 95%."""
    n = 1
    while agreement_lower_bound(n, n, confidence) < target:
        n += 1
        if n > 100_000:
            raise ValueError(f"agreement {target} cannot be shown at confidence {confidence}")
    return n


@dataclass(frozen=True)
class Threshold:
    """A confidence threshold and what it does on the records it was measured on."""

    threshold: float | None  # None: no threshold passes; the teacher answers everything
    coverage: float  # share of records the student serves
    served: int
    agreement: float | None  # agreement with the teacher on the served share
    agreement_ci_low: float | None
    n: int


def measure(confidences: Sequence[float], agrees: Sequence[bool], threshold: float | None,
            confidence: float) -> Threshold:
    """Coverage and served-share agreement (with its lower bound) of a fixed threshold on some records."""
    conf = np.asarray(confidences, dtype=float)
    ok = np.asarray(agrees, dtype=bool)
    n = len(conf)
    if threshold is None or n == 0:
        return Threshold(threshold, 0.0, 0, None, None, n)
    mask = conf >= threshold
    served, agreed = int(mask.sum()), int(ok[mask].sum())
    return Threshold(threshold, served / n, served, agreed / served if served else None,
                     agreement_lower_bound(agreed, served, confidence) if served else None, n)


def _cuts(confidences: Sequence[float], agrees: Sequence[bool]) -> tuple[int, list[tuple[float, int, int]]]:
    """The record count and every threshold between distinct confidences, most confident first, as
    (threshold, served, agreed): a threshold admits every record at or above it, so ties are served together."""
    conf = np.asarray(confidences, dtype=float)
    ok = np.asarray(agrees, dtype=bool)
    if len(conf) != len(ok):
        raise ValueError(f"{len(conf)} confidences but {len(ok)} agreement flags")
    order = np.argsort(-conf, kind="stable")
    conf, ok = conf[order], ok[order]
    agreed_so_far = np.cumsum(ok)
    return len(conf), [(float(conf[i]), i + 1, int(agreed_so_far[i])) for i in range(len(conf))
                       if i + 1 == len(conf) or conf[i + 1] != conf[i]]


def choose_threshold(confidences: Sequence[float], agrees: Sequence[bool], *, min_agreement: float,
                     confidence: float = 0.95, start_served: int = 0) -> Threshold:
    """The lowest threshold (most coverage) that fixed-sequence testing accepts; `threshold=None` if none.
    `start_served`: the first threshold tested is the first serving at least this many records (a starting point
    fixed without looking at whether these records agree, e.g. planned on calibration records)."""
    n, cuts = _cuts(confidences, agrees)
    needed = min_served_for(min_agreement, confidence)
    chosen = Threshold(None, 0.0, 0, None, None, n)
    for threshold, served, agreed in cuts:
        if served < max(needed, start_served):
            continue  # cannot pass yet, or before the start; skipping depends on confidences only, not agreement
        low = agreement_lower_bound(agreed, served, confidence)
        if low < min_agreement:
            break  # fixed sequence: the first failure ends the scan
        chosen = Threshold(threshold, served / n, served, agreed / served, low, n)
    return chosen


@dataclass(frozen=True)
class Plan:
    """Where fixed-sequence testing on the report starts, and what simulated reports say it will bring."""

    start_served: int  # the first threshold tested serves at least this many report records
    start_coverage: float
    expected_coverage: float  # mean coverage where the walk stops, over the simulated reports (0 when it fails)
    promotion_rate: float  # share of simulated reports whose walk ends at min_coverage or more
    draws: int


def plan_start(confidences: Sequence[float], agrees: Sequence[bool], *, n_report: int, min_agreement: float,
               min_coverage: float, confidence: float = 0.95, draws: int = 200, seed: int = 0) -> Plan:
    """The start of the report's walk that maximises the expected share served, judged on calibration records.

    Simulated reports are `draws` resamples (with replacement) of `n_report` calibration records; on each, every
    candidate start is walked as `choose_threshold` walks the report (first failure ends it). The start with the
    highest mean coverage among walks that reach `min_coverage` (a smaller one saves nothing: the decision needs
    it) wins; when none reaches it, the start with the highest mean coverage. Too high a start fails at once on
    many reports; too low a one spends its only failure on a dip among the first few dozen served records. The
    report's labels are never used, so the guarantee holds for the threshold the walk stops at."""
    conf = np.asarray(confidences, dtype=float)
    ok = np.asarray(agrees, dtype=bool)
    needed = min_served_for(min_agreement, confidence)
    if len(conf) == 0 or n_report < needed:
        return Plan(n_report, 1.0, 0.0, 0.0, 0)
    from scipy.stats import beta

    # The smallest start the decision can use is a candidate too: a walk from below it must pass every
    # threshold on the way, so starting there reaches every final coverage >= min_coverage that a lower start
    # reaches, on every report (never worse); the grid alone could miss it by a step.
    floor = math.ceil(min_coverage * n_report - 1e-9)
    grid = np.linspace(needed, n_report, min(60, n_report - needed + 1)).round().astype(int)
    starts = np.unique(np.append(grid, [floor] if needed <= floor <= n_report else []).astype(int))
    served = np.arange(1, n_report + 1)
    finals = np.zeros((draws, len(starts)))
    rng = np.random.default_rng(seed)
    for b in range(draws):
        pick = rng.integers(0, len(conf), n_report)
        agreed = np.cumsum(ok[pick][np.argsort(-conf[pick], kind="stable")])
        low = beta.ppf(1 - confidence, np.maximum(agreed, 1), served - agreed + 1)
        passes = (agreed > 0) & (low >= min_agreement)
        # first failing prefix size at or after each size: the walk from a passing start stops just before it
        fail_at = np.where(passes, n_report + 1, served)
        first_fail = np.minimum.accumulate(fail_at[::-1])[::-1]
        at = starts - 1
        finals[b] = np.where(passes[at], first_fail[at] - 1, 0) / n_report
    reaching = finals >= min_coverage
    gain = np.where(reaching, finals, 0.0).mean(axis=0)
    if gain.max() > 0:  # starts below the floor are dominated by the floor (above): only those at or above it
        score = np.where(starts >= min(floor, int(starts.max())), gain + 1e-9 * finals.mean(axis=0), -1.0)
        best = int(np.argmax(score))
    else:
        best = int(np.argmax(finals.mean(axis=0)))
    return Plan(int(starts[best]), round(float(starts[best]) / n_report, 4), round(float(finals[:, best].mean()), 4),
                round(float(reaching[:, best].mean()), 4), draws)


def selective_report(
    calibration: tuple[Sequence[float], Sequence[bool]] | None, report: tuple[Sequence[float], Sequence[bool]], *,
    min_agreement: float, min_coverage: float = 0.5, confidence: float = 0.95,
) -> dict[str, Any]:
    """The decision's `cascade` block, measured on `report`.

    With `calibration` (records the student was not fitted on, e.g. out-of-fold predictions): the start is
    planned there by simulating reports of this size (`plan_start`), and fixed-sequence testing on the report
    starts where the student serves that many of the report's records and walks towards more coverage while the
    bound holds. The start depends on the calibration's labels and the report's confidences only, so the walk is
    a fixed sequence and its guarantee holds for the threshold it stops at (Learn-then-Test); matching coverage
    rather than copying the raw threshold matters because the final student (fitted on all records) is more
    confident than its out-of-fold versions were.
    Without: fixed-sequence testing on `report` from the most confident record.
    When the first tested threshold already fails, the block shows it (coverage and its bound below the
    target), so the decision can say by how much the student missed."""
    n_report = len(report[0])
    planned: Plan | None = None
    if calibration is not None and len(calibration[0]) > 0:
        planned = plan_start(*calibration, n_report=n_report, min_agreement=min_agreement,
                                          min_coverage=min_coverage, confidence=confidence)
        start = planned.start_served if planned.draws else 0
        method, n_calibration = "planned on calibration records, fixed-sequence testing on the report", len(calibration[0])
    else:
        start = 0
        method, n_calibration = "fixed-sequence testing on the report records", n_report
    chosen = choose_threshold(*report, min_agreement=min_agreement, confidence=confidence, start_served=start)
    threshold = chosen.threshold
    if threshold is None and start > 0:
        threshold = _threshold_at_coverage(report[0], start / n_report)  # the start failed: shown, never passes
    reported = measure(*report, threshold, confidence)
    return {
        "threshold": threshold, "coverage": round(reported.coverage, 4), "served": reported.served,
        "agreement": None if reported.agreement is None else round(reported.agreement, 4),
        "agreement_ci_low": None if reported.agreement_ci_low is None else round(reported.agreement_ci_low, 4),
        "n_calibration": n_calibration, "n_report": reported.n, "confidence": confidence,
        "target_agreement": min_agreement, "method": method,
        "calibration": asdict(planned) if planned is not None else None,
    }


def _threshold_at_coverage(confidences: Sequence[float], coverage: float) -> float | None:
    """The confidence at or above which `coverage` of these records fall (ties served together)."""
    ordered = sorted(confidences, reverse=True)
    served = round(coverage * len(ordered))
    return float(ordered[served - 1]) if served > 0 else None


def coverage_curve(confidences: Sequence[float], agrees: Sequence[bool],
                   points: int = 20) -> list[dict[str, float]]:
    """Coverage vs served-share agreement at evenly spaced coverages (for plots and the bench)."""
    conf = np.asarray(confidences, dtype=float)
    ok = np.asarray(agrees, dtype=bool)[np.argsort(-conf, kind="stable")]
    rows = []
    for k in range(1, points + 1):
        served = max(1, round(len(ok) * k / points))
        rows.append({"coverage": round(served / len(ok), 4), "agreement": round(float(ok[:served].mean()), 4)})
    return rows
