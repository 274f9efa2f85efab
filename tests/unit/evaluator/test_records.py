"""EvalResult / LatencyStats records and the latency helper."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from services.domain.errors import InsufficientData
from services.domain.evaluation import EvalKind, EvalResult, LatencyStats
from services.evaluator.metrics.latency import latency_stats

BASE = {"candidate": "smollm2-135m", "eval_kind": "customized", "dataset_id": "ds-1", "eval_sha256": "ab" * 32}


def test_classification_result_exposes_f1_vs_teacher() -> None:
    result = EvalResult(**BASE, workload_type="classification", score=0.91, ci=(0.88, 0.94), n=200, unparseable=3,
                        decoding="constrained", metrics={"accuracy": 0.93})
    assert result.metric_name == "f1_vs_teacher"
    public = result.to_public()
    assert public["f1_vs_teacher"] == 0.91 and public["f1_vs_teacher_ci"] == [0.88, 0.94]
    assert "score" not in public and "ci" not in public and "score_vs_teacher" not in public
    assert public["eval_kind"] == "customized" and public["decoding"] == "constrained"
    assert json.loads(result.to_public_json()) == public


@pytest.mark.parametrize("workload", ["chat", "tool_calling", "embedding"])
def test_other_workloads_expose_score_vs_teacher(workload: str) -> None:
    result = EvalResult(**BASE, workload_type=workload, score=0.5, ci=(0.4, 0.6), n=10)
    public = result.to_public()
    assert result.metric_name == "score_vs_teacher"
    assert public["score_vs_teacher"] == 0.5 and public["score_vs_teacher_ci"] == [0.4, 0.6]
    assert "f1_vs_teacher" not in public


def test_round_trips_through_json() -> None:
    latency = latency_stats([0.010, 0.020, 0.030])
    result = EvalResult(**BASE, workload_type="classification", score=0.8, ci=(0.7, 0.9), n=5, latency=latency,
                        model_size_bytes=1234, metrics={"per_class": {"a": {"f1": 1.0}}})
    assert EvalResult.model_validate_json(result.model_dump_json()) == result
    assert EvalResult.model_validate(result.model_dump()) == result


def test_not_applicable() -> None:
    result = EvalResult.not_applicable("minilm-classifier", EvalKind.ICL, "ds-1", "ab" * 32, "classification",
                                       "ICL applies to causal-LM students only")
    assert not result.applicable and result.score is None and result.ci is None
    assert result.to_public()["f1_vs_teacher"] is None and result.to_public()["f1_vs_teacher_ci"] is None
    assert result.reason == "ICL applies to causal-LM students only"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"workload_type": "chat", "metric_name": "f1_vs_teacher"}, "does not fit workload_type"),
        ({"workload_type": "chat", "applicable": False}, "needs a reason"),
        ({"workload_type": "chat", "applicable": False, "reason": "x", "score": 0.5}, "no score or ci"),
        ({"workload_type": "chat", "score": 0.5, "ci": (0.6, 0.4)}, "exceeds upper bound"),
        ({"workload_type": "chat", "score": 1.5}, "less than or equal to 1"),
        ({"workload_type": "chat", "n": 2, "unparseable": 3}, "exceeds n"),
        ({"workload_type": "chat", "surprise": 1}, "Extra inputs are not permitted"),
        ({"workload_type": "regression"}, "workload_type"),
    ],
)
def test_invalid_results_are_refused(fields: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        EvalResult(**BASE, **fields)


def test_results_are_frozen() -> None:
    result = EvalResult(**BASE, workload_type="chat")
    with pytest.raises(ValidationError):
        result.score = 1.0  # type: ignore[misc]


def test_latency_stats() -> None:
    stats = latency_stats([0.1] * 19 + [1.0])
    assert stats.n == 20
    assert stats.p50_ms == pytest.approx(100.0)
    assert stats.p95_ms == pytest.approx(100.0 + 0.05 * 900.0)  # numpy's linear interpolation
    assert stats.mean_ms == pytest.approx(145.0)
    assert stats.throughput_per_s == pytest.approx(20 / 2.9)
    # A batched run: 20 requests finished in 0.5 s of wall time.
    assert latency_stats([0.1] * 20, wall_s=0.5).throughput_per_s == pytest.approx(40.0)
    assert isinstance(stats, LatencyStats)


def test_latency_stats_refuses_nonsense() -> None:
    with pytest.raises(InsufficientData):
        latency_stats([])
    with pytest.raises(ValueError):
        latency_stats([0.1, -1.0])
    with pytest.raises(ValueError):
        latency_stats([0.1], wall_s=0)
