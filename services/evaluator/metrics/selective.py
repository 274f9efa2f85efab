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
- `selective_report` plans a coverage on calibration records (out-of-fold or a split the student was
  not fitted on) as the largest one the report could confirm at its size (`plan_coverage`), starts
  fixed-sequence testing on the eval records at that coverage of their confidences and walks towards
  more coverage while the bound holds; it reports the served share's agreement and lower bound where
  the walk stopped, a threshold whose guarantee holds as chosen (the walk is a fixed sequence).
"""

from __future__ import annotations

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


def plan_coverage(confidences: Sequence[float], agrees: Sequence[bool], *, n_report: int, min_agreement: float,
                  confidence: float = 0.95) -> Threshold:
    """The largest coverage of the calibration records at which the report is expected to pass: were the
    report's served share (coverage x `n_report` records) to agree as often as the calibration's did, its
    one-sided lower bound would reach `min_agreement`. `threshold=None` if no coverage qualifies.

    Why not the calibration's own fixed-sequence choice: it stops where the *calibration's* bound (over
    ~1,800 out-of-fold records, a tight one) meets the target, i.e. at an agreement just above it; the report,
    a few hundred records, then needs a clearly higher observed agreement for its wider bound to pass, and
    almost never did (docs/benchmarks.md). Planning for the report's size keeps the guarantee (the report's
    labels are still never used to choose) and chooses a coverage the report can confirm."""
    n, cuts = _cuts(confidences, agrees)
    needed = min_served_for(min_agreement, confidence)
    chosen = Threshold(None, 0.0, 0, None, None, n)
    for threshold, served, agreed in cuts:
        planned = round(served / n * n_report)
        if planned < needed:
            continue
        expected = int(np.floor(agreed / served * planned))  # the calibration's rate on the report's count
        if agreement_lower_bound(expected, planned, confidence) >= min_agreement:
            chosen = Threshold(threshold, served / n, served, agreed / served,
                               agreement_lower_bound(agreed, served, confidence), n)
    return chosen


def selective_report(
    calibration: tuple[Sequence[float], Sequence[bool]] | None, report: tuple[Sequence[float], Sequence[bool]], *,
    min_agreement: float, confidence: float = 0.95,
) -> dict[str, Any]:
    """The decision's `cascade` block, measured on `report`.

    With `calibration` (records the student was not fitted on, e.g. out-of-fold predictions): the coverage is
    planned there for the report's size (`plan_coverage`), and fixed-sequence testing on the report starts where
    the student serves that share of the report's confidences and walks towards more coverage while the bound
    holds. The start depends on the calibration's labels and the report's confidences only, so the walk is a
    fixed sequence and its guarantee holds for the threshold it stops at (Learn-then-Test); matching coverage
    rather than copying the raw threshold matters because the final student (fitted on all records) is more
    confident than its out-of-fold versions were. Starting at the plan, not at the most confident record, keeps
    one early disagreement among a few dozen served records from ending the walk before it starts.
    Without: fixed-sequence testing on `report` from the most confident record.
    When the first tested threshold already fails, the block shows it (coverage and its bound below the
    target), so the decision can say by how much the student missed."""
    n_report = len(report[0])
    if calibration is not None and len(calibration[0]) > 0:
        planned: Threshold | None = plan_coverage(*calibration, n_report=n_report, min_agreement=min_agreement,
                                                  confidence=confidence)
        start = round(planned.coverage * n_report) if planned.threshold is not None else 0
        method, n_calibration = "planned on calibration records, fixed-sequence testing on the report", len(calibration[0])
    else:
        planned, start = None, 0
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
