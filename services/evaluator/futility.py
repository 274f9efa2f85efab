"""Stop evaluating a student that provably cannot qualify (a futility stop, as in sequential trials).

A customized causal-LM evaluation on CPU costs seconds a record; a job must not spend twenty minutes to
learn that a student scoring 0.04 misses a 0.9 bar. Every `evaluation.futility_every` records the
evaluator asks: at `evaluation.futility_confidence` (0.99 by default: stricter than the verdict's 0.95,
because the question is asked several times), is the score's upper bound under `promotion.min_score`,
and, where a selective promotion could still apply (classification), is the agreement's upper bound
under `min_coverage x min_agreement`? (Serving a share c >= min_coverage at agreement >= min_agreement
means agreeing on at least their product of all records.) Only when every way to qualify is ruled out
does the evaluation stop; it is scored on the records answered and marked `stopped_early` with the
bounds, so the decision says why the student lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from services.domain.bounds import binomial_upper_bound
from services.domain.settings import EvaluationSettings, PromotionPolicy
from services.evaluator.scoring import score_predictions

FUTILE_WORKLOADS = ("classification", "tool_calling")  # cheap, judge-free scores


@dataclass
class FutilityRule:
    """Called with the predictions so far; True once the student cannot qualify. `verdict` says why."""

    workload_type: str
    references: Sequence[Any]
    policy: PromotionPolicy
    evaluation: EvaluationSettings
    verdict: dict[str, Any] | None = field(default=None, init=False)

    @property
    def confidence(self) -> float:
        return self.evaluation.futility_confidence or 0.99

    def __call__(self, predictions: list[Any]) -> bool:
        n = len(predictions)
        if n == 0:
            return False
        references = list(self.references[:n])
        scored = score_predictions(self.workload_type, references, predictions,  # type: ignore[arg-type]  # one of FUTILE_WORKLOADS
                                   self.evaluation.model_copy(update={"confidence": self.confidence}), None,
                                   seed=self.evaluation.seed)
        score_high = scored.ci[1] if scored.ci is not None else scored.score
        if score_high is None or score_high >= self.policy.min_score:
            return False
        verdict: dict[str, Any] = {"answered": n, "planned": len(self.references), "confidence": self.confidence,
                                   "score": scored.score, "score_ci_high": score_high, "min_score": self.policy.min_score}
        if self.workload_type == "classification" and self.policy.selective:
            agreed = sum(p == r for p, r in zip(predictions, references, strict=True))
            agreement_high = binomial_upper_bound(agreed, n, self.confidence)
            needed = self.policy.min_coverage * self.policy.min_agreement
            if agreement_high >= needed:
                return False
            verdict |= {"agreement": agreed / n, "agreement_ci_high": agreement_high, "selective_needs": needed}
        verdict["reason"] = (f"stopped after {n} of {len(self.references)} records: at {self.confidence:.0%} "
                             f"confidence the student cannot reach min_score {self.policy.min_score}"
                             + (" nor a selective promotion" if "selective_needs" in verdict else ""))
        self.verdict = verdict
        return True


def futility_rule(workload_type: str, references: Sequence[Any], policy: PromotionPolicy,
                  evaluation: EvaluationSettings) -> FutilityRule | None:
    """The rule for a customized evaluation, or None where it does not apply (off, or a judged workload)."""
    if evaluation.futility_confidence is None or workload_type not in FUTILE_WORKLOADS:
        return None
    return FutilityRule(workload_type, references, policy, evaluation)
