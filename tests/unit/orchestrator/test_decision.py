"""decide(): table-tested promotion policy (lower CI bound, floors, latency, ranking, cost)."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.decision import TeacherUsage, decide, student_cost_per_1k, teacher_cost_per_1k
from services.domain.evaluation import EvalKind, EvalResult, LatencyStats
from services.domain.settings import PricingSettings, PromotionPolicy

PRICING = PricingSettings(teacher_per_1k_input_tokens=0.003, teacher_per_1k_output_tokens=0.006,
                          student_per_hour=0.36, student_per_hour_by_candidate={"gpu-student": 3.6})


def result(candidate: str, score: float | None, ci: tuple[float, float] | None, *, n: int = 200,
           p95: float = 10.0, throughput: float = 100.0, kind: EvalKind = EvalKind.CUSTOMIZED,
           per_class: dict[str, Any] | None = None, applicable: bool = True) -> EvalResult:
    if not applicable:
        return EvalResult.not_applicable(candidate, kind, "d" * 64, "e" * 64, "classification", "does not apply")
    return EvalResult(candidate=candidate, eval_kind=kind, dataset_id="d" * 64, eval_sha256="e" * 64,
                      workload_type="classification", score=score, ci=ci, n=n,
                      metrics={"per_class": per_class or {}}, artifact_id=f"art-{candidate}",
                      latency=LatencyStats(n=n, p50_ms=p95 / 2, p95_ms=p95, mean_ms=p95 / 2, throughput_per_s=throughput))


POLICY = PromotionPolicy(min_score=0.9, min_eval_size=100)


@pytest.mark.parametrize(
    ("results", "policy", "chosen", "reason_part"),
    [
        ([result("a", 0.95, (0.92, 0.97))], POLICY, "a", "lower CI bound 0.920"),
        # A good point estimate whose lower bound is under the bar does not qualify.
        ([result("a", 0.93, (0.85, 0.97))], POLICY, None, "lower CI bound 0.850 is below the minimum 0.900"),
        ([result("a", 0.99, (0.95, 1.0), n=40)], POLICY, None, "eval set has 40 records"),
        ([result("a", 0.99, (0.95, 1.0), p95=80.0)], POLICY.model_copy(update={"max_latency_p95_ms": 50.0}),
         None, "p95 latency 80.0 ms exceeds 50.0 ms"),
        ([result("a", 0.96, (0.93, 0.98), per_class={"IPO": {"f1": 0.4, "support": 12},
                                                        "Rare": {"f1": 0.0, "support": 2}})],
         POLICY.model_copy(update={"class_f1_floor": 0.7}), None, "1 classes with support >= 10 are below the F1 floor"),
        ([result("a", 0.97, (0.95, 0.99), kind=EvalKind.BASE)], POLICY, None, "no candidate was evaluated"),
        ([result("enc", None, None, applicable=False)], POLICY, None, "not evaluated: does not apply"),
        ([], POLICY, None, "no candidate was evaluated"),
    ],
)
def test_policy_table(results: list[EvalResult], policy: PromotionPolicy, chosen: str | None, reason_part: str) -> None:
    decision = decide("news", results, policy, PRICING)
    assert decision.chosen == chosen
    text = decision.reason + " " + " ".join(r for v in decision.verdicts for r in v.reasons)
    assert reason_part in text


def test_cheapest_qualifying_student_wins_and_others_say_why() -> None:
    results = [result("gpu-student", 0.97, (0.95, 0.99), throughput=400.0),  # 3.6/h: 0.0025 per 1k
               result("cpu-student", 0.95, (0.92, 0.97), throughput=100.0),  # 0.36/h: 0.001 per 1k
               result("weak", 0.80, (0.70, 0.85))]
    decision = decide("news", results, POLICY, PRICING, teacher_usage=TeacherUsage(200, 10))
    assert decision.chosen == "cpu-student" and decision.artifact_id == "art-cpu-student"
    by_name = {v.candidate: v for v in decision.verdicts}
    assert "ranks #2 by cost/latency/score after cpu-student" in by_name["gpu-student"].reasons[0]
    assert not by_name["weak"].qualified
    assert decision.teacher_cost_per_1k_requests == pytest.approx(0.66)  # (200*0.003 + 10*0.006) per request * 1000 / 1000
    assert decision.chosen_cost_per_1k_requests == pytest.approx(0.001)
    assert "cost per 1k requests 0.6600 -> 0.0010" in decision.reason
    assert decision.rollout == "canary" and decision.canary_percent == 10


def test_preferring_score_first_picks_the_best_student() -> None:
    results = [result("gpu-student", 0.97, (0.95, 0.99), throughput=400.0), result("cpu-student", 0.95, (0.92, 0.97))]
    policy = POLICY.model_copy(update={"prefer": ["score", "cost", "latency"], "rollout": "direct"})
    decision = decide("news", results, policy, PRICING)
    assert decision.chosen == "gpu-student" and decision.canary_percent is None


def test_failed_candidates_are_listed_with_their_reason() -> None:
    decision = decide("news", [result("a", 0.95, (0.92, 0.97))], POLICY, PRICING,
                      failed={"smollm2-lora": "out_of_memory: lower batch_size"})
    assert decision.chosen == "a"
    failed = next(v for v in decision.verdicts if v.candidate == "smollm2-lora")
    assert not failed.qualified and failed.reasons == ["failed: out_of_memory: lower batch_size"]


def test_costs() -> None:
    assert teacher_cost_per_1k(None, PRICING) is None
    assert student_cost_per_1k(result("x", 0.9, (0.9, 0.9), throughput=0.0), PRICING) is None


def test_workload_overrides_apply_to_the_policy() -> None:
    from services.domain.settings import Settings

    settings = Settings.model_validate({"workloads": {"news": {"promotion": {"min_score": 0.8, "require_approval": True}}}})
    policy = settings.promotion_policy("news")
    decision = decide("news", [result("a", 0.86, (0.82, 0.9))], policy, settings.pricing)
    assert decision.chosen == "a" and decision.requires_approval
    assert decide("other", [result("a", 0.86, (0.82, 0.9))], settings.promotion_policy("other"), settings.pricing).chosen is None


def test_training_notes_say_how_many_examples_were_cut() -> None:
    from types import SimpleNamespace

    from orchestrator.pipeline.tasks import training_notes

    job = SimpleNamespace(stages=[
        SimpleNamespace(name="customize", candidate="lm", result={"metrics": {
            "truncated_examples": 83, "train_examples": 100, "max_seq_length": 256}}),
        SimpleNamespace(name="customize", candidate="clf", result={"metrics": {"truncated_examples": 0}}),
        SimpleNamespace(name="decide", candidate=None, result=None)])
    (note,) = training_notes(job)  # type: ignore[arg-type]
    assert note.startswith("lm: 83 training examples (of 100 train) were cut at max_seq_length 256")


def _selective(candidate: str, *, coverage: float, low: float, score: float = 0.7,
               threshold: float | None = 0.6) -> EvalResult:
    block = {"threshold": threshold, "coverage": coverage, "served": int(coverage * 200), "agreement": low + 0.04,
             "agreement_ci_low": low, "n_calibration": 1800, "n_report": 200, "confidence": 0.95,
             "target_agreement": 0.9, "method": "chosen on out-of-fold predictions, reported on the eval split"}
    base = result(candidate, score, (score - 0.05, score + 0.05))
    return base.model_copy(update={"metrics": {**base.metrics, "selective": block}})


USAGE = TeacherUsage(prompt_tokens=1200, completion_tokens=5)


def test_a_student_that_misses_the_bar_is_promoted_selectively_with_its_guarantee() -> None:
    decision = decide("w", [_selective("a", coverage=0.6, low=0.93)], POLICY, PRICING, teacher_usage=USAGE)
    assert decision.chosen == "a" and decision.mode == "selective"
    assert decision.cascade is not None and decision.cascade.threshold == 0.6
    assert "selectively" in decision.reason and "60% of 200 held-out records" in decision.reason
    (verdict,) = decision.verdicts
    teacher = decision.teacher_cost_per_1k_requests
    assert verdict.effective_cost_per_1k_requests == pytest.approx(verdict.cost_per_1k_requests + 0.4 * teacher, rel=1e-4)


@pytest.mark.parametrize(("coverage", "low", "threshold", "why"), [
    (0.3, 0.95, 0.6, "would serve 30% of 200 held-out requests at agreement 0.990 (lower bound 0.950): below "
                     "min_coverage 50%"),
    (0.6, 0.85, 0.6, "(lower bound 0.850): lower bound below min_agreement 0.900"),
    (0.0, 0.0, None, "no confidence threshold reaches agreement 0.90"),
])
def test_selective_shortfalls_are_named(coverage: float, low: float, threshold: float | None, why: str) -> None:
    decision = decide("w", [_selective("a", coverage=coverage, low=low, threshold=threshold)], POLICY, PRICING,
                      teacher_usage=USAGE)
    assert decision.chosen is None
    assert any(why in reason for reason in decision.verdicts[0].reasons), decision.verdicts[0].reasons


def test_full_and_selective_options_are_ranked_by_what_they_cost() -> None:
    full = result("full", 0.95, (0.92, 0.97), throughput=1.0)  # slow: 0.1 per 1k requests
    selective = _selective("sel", coverage=0.9, low=0.95)  # fast, defers 10% to the teacher
    decision = decide("w", [full, selective], POLICY, PRICING, teacher_usage=USAGE)
    costs = {v.candidate: v.effective_cost_per_1k_requests for v in decision.verdicts}
    assert decision.chosen == min(costs, key=costs.get)  # type: ignore[arg-type]
    off = decide("w", [_selective("a", coverage=0.9, low=0.95)], POLICY.model_copy(update={"selective": False}),
                 PRICING, teacher_usage=USAGE)
    assert off.chosen is None, "selective: false keeps the full bar only"
