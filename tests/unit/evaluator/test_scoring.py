"""score_predictions: one entry point, the right headline for each workload."""

from __future__ import annotations

import json

import numpy as np
import pytest

from services.domain.evaluation import EvalResult
from services.domain.settings import EvaluationSettings
from services.evaluator.scoring import score_predictions

SETTINGS = EvaluationSettings(bootstrap_samples=300, confidence=0.9)


def _call(name: str, **args: object) -> dict:
    return {"type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


def test_classification() -> None:
    scored = score_predictions("classification", ["a", "a", "b", "b"], ["a", None, "b", "b"], SETTINGS)
    assert scored.metric_name == "f1_vs_teacher"
    assert scored.score == pytest.approx(scored.metrics["f1_vs_teacher"])
    assert scored.unparseable == 1
    assert scored.ci is not None and scored.ci[0] <= scored.score <= scored.ci[1]


def test_tool_calling() -> None:
    scored = score_predictions(
        "tool_calling",
        [[_call("quote", ticker="NVDA")], "Hello!", [_call("quote", ticker="AMD")]],
        [[_call("quote", ticker="NVDA")], "Hi.", [_call("quote", ticker="INTC")]],
        SETTINGS,
    )
    assert scored.metric_name == "score_vs_teacher"
    assert scored.score == pytest.approx(2 / 3) and scored.metrics["name_accuracy"] == 1.0


def test_chat_without_judge_falls_back_to_lexical() -> None:
    scored = score_predictions("chat", ["Rates held", "Oil up"], ["rates held", None], SETTINGS, None)
    assert scored.metrics["scorer"] == "lexical"
    assert scored.score == pytest.approx(0.5) and scored.unparseable == 1


def test_embedding_with_matryoshka_dims() -> None:
    rng = np.random.default_rng(0)
    teacher = rng.normal(size=(50, 16))
    scored = score_predictions("embedding", teacher, np.hstack([teacher, rng.normal(size=(50, 16))]), SETTINGS,
                               matryoshka_dims=[16])
    assert scored.score == scored.metrics["recall@10"] < 1.0
    assert scored.metrics["matryoshka"]["16"]["recall@10"] == pytest.approx(1.0)


def test_no_bootstrap_means_no_ci() -> None:
    scored = score_predictions("classification", ["a", "b"], ["a", "b"], EvaluationSettings(bootstrap_samples=0))
    assert scored.score == 1.0 and scored.ci is None


def test_outcome_feeds_an_eval_result() -> None:
    metric_name, score, ci, metrics, unparseable = score_predictions(
        "classification", ["a", "b", "b"], ["a", "b", "zzz"], SETTINGS
    )
    result = EvalResult(candidate="c", eval_kind="base", dataset_id="d", eval_sha256="h", workload_type="classification",
                        score=score, ci=ci, n=metrics["n"], unparseable=unparseable, metrics=metrics)
    assert result.metric_name == metric_name
    assert json.loads(result.to_public_json())["f1_vs_teacher"] == pytest.approx(score)


def test_chat_judge_needs_requests() -> None:
    import openai

    from services.evaluator.judge import JudgeClient

    # Never called: the missing requests are caught before any judge traffic.
    judge = JudgeClient(openai.OpenAI(base_url="http://127.0.0.1:9/v1", api_key="x", max_retries=0), model="m")
    with pytest.raises(ValueError, match="request messages"):
        score_predictions("chat", ["x"], ["x"], SETTINGS, judge)


def test_unknown_workload() -> None:
    with pytest.raises(ValueError, match="unknown workload type"):
        score_predictions("regression", [1.0], [1.0], SETTINGS)  # type: ignore[arg-type]
