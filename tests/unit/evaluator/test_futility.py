"""The futility stop: an evaluation ends early only when every way to qualify is ruled out."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.domain.settings import EvaluationSettings, PromotionPolicy
from services.evaluator.futility import futility_rule

LABELS = ["earnings", "merger", "rates", "guidance"]


def _rule(references: list[str], **policy: object):  # type: ignore[no-untyped-def]
    rule = futility_rule("classification", references, PromotionPolicy.model_validate(policy), EvaluationSettings())
    assert rule is not None
    return rule


def test_a_student_that_agrees_rarely_is_stopped_with_its_bounds() -> None:
    references = [LABELS[i % 4] for i in range(400)]
    wrong = [LABELS[(i + 1) % 4] if i % 5 else LABELS[i % 4] for i in range(100)]  # agrees on 20%
    rule = _rule(references)
    assert rule(wrong)
    verdict = rule.verdict
    assert verdict is not None and verdict["answered"] == 100 and verdict["planned"] == 400
    assert verdict["agreement"] == pytest.approx(0.2)
    assert verdict["agreement_ci_high"] < verdict["selective_needs"] == pytest.approx(0.45)
    assert verdict["score_ci_high"] < 0.9 and "nor a selective promotion" in verdict["reason"]


def test_a_student_that_could_still_serve_selectively_is_not_stopped() -> None:
    """60% agreement overall: it misses min_score for sure, but serving half at 0.9 is still possible."""
    references = [LABELS[i % 4] for i in range(400)]
    mixed = [LABELS[i % 4] if i % 5 < 3 else LABELS[(i + 1) % 4] for i in range(100)]
    assert not _rule(references)(mixed)
    assert _rule(references, selective=False)(mixed), "with selective off, the score bound alone decides"


def test_too_few_records_or_a_good_student_never_stop() -> None:
    references = [LABELS[i % 4] for i in range(400)]
    rule = _rule(references, selective=False)
    assert not rule(references[:100]) and rule.verdict is None, "a perfect student answers every record"
    assert not rule([]) and rule.verdict is None


def test_judged_workloads_and_a_disabled_rule_get_none() -> None:
    policy = PromotionPolicy()
    assert futility_rule("chat", ["a"], policy, EvaluationSettings()) is None
    assert futility_rule("classification", ["a"], policy, EvaluationSettings(futility_confidence=None)) is None


def test_a_hopeless_causal_lm_stops_early_and_the_decision_says_why(tmp_path: Path) -> None:
    """A barely trained tiny causal LM under a 0.99 bar: the evaluation stops at the first check, scored on the
    records answered, and the verdict names the stop (real training and evaluation, tiny models)."""
    from orchestrator.decision import decide
    from services.customizer.service import train_candidate
    from services.domain.evaluation import EvalKind
    from services.evaluator.runner import evaluate
    from tests.model_plane import model_plane

    plane = model_plane(tmp_path, records=240, max_steps=1)
    settings = plane.settings.model_copy(update={
        "evaluation": plane.settings.evaluation.model_copy(update={"futility_every": 10}),
        "promotion": plane.settings.promotion.model_copy(update={"min_score": 0.99, "selective": False}),
    })
    planned = plane.dataset.splits["eval"]["count"]
    assert planned > 10
    train_candidate(settings, "tiny-lora", plane.dataset.dataset_id)
    result = evaluate(settings, candidate="tiny-lora", dataset_id=plane.dataset.dataset_id, kind=EvalKind.CUSTOMIZED)
    stopped = result.metrics["stopped_early"]
    assert result.n == stopped["answered"] == 10 and stopped["planned"] == planned
    assert "stopped_by_budget" not in result.metrics
    verdict = decide("news_topic", [result], settings.promotion_policy("news_topic"), settings.pricing).verdicts[0]
    assert not verdict.qualified and any("stopped after 10 of" in r for r in verdict.reasons), verdict.reasons
