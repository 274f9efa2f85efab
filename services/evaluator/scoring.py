"""One entry point that scores a candidate's outputs against the teacher's, whatever the workload.

The evaluation runner produces references (the teacher's answers) and predictions (the
candidate's) and calls `score_predictions`; which metric applies, and which number is the
headline, is decided here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypedDict

import numpy as np

from services.domain.evaluation import EvalWorkloadType, metric_name_for
from services.domain.settings import EvaluationSettings
from services.evaluator.judge import JudgeClient, judge_report
from services.evaluator.metrics.classification import classification_report
from services.evaluator.metrics.embedding import embedding_report
from services.evaluator.metrics.retrieval_judged import judged_retrieval
from services.evaluator.metrics.retrieval_vs_teacher import retrieval_vs_teacher
from services.evaluator.metrics.text import text_report
from services.evaluator.metrics.tool_calling import tool_calling_report


class _Bootstrap(TypedDict):
    bootstrap_samples: int
    confidence: float
    seed: int


class Scored(NamedTuple):
    """What scoring found: the headline (name, score, CI), every other metric, and unparseable outputs."""

    metric_name: str
    score: float | None
    ci: tuple[float, float] | None
    metrics: dict[str, Any]
    unparseable: int


def _ci(value: list[float] | None) -> tuple[float, float] | None:
    return (value[0], value[1]) if value is not None else None


def score_predictions(
    workload_type: EvalWorkloadType,
    references: Sequence[Any] | np.ndarray,
    predictions: Sequence[Any] | np.ndarray,
    settings: EvaluationSettings,
    judge: JudgeClient | None = None,
    *,
    requests: Sequence[Sequence[Mapping[str, Any]]] | None = None,
    matryoshka_dims: Sequence[int] = (),
    roles: Sequence[str] | None = None,
    texts: Sequence[str] | None = None,
    grades_dir: Path | None = None,
    seed: int = 0,
) -> Scored:
    """Score predictions against the teacher's references; returns (metric_name, score, ci, metrics, unparseable).

    classification: label strings (None = unparseable). tool_calling: lists of OpenAI tool_call
    dicts, or text, or None. chat: strings (None = unparseable), plus `requests` (each record's
    request messages) when a judge is given. embedding: the teacher and student matrices (n x d), and with
    `roles` (query | passage per row) the headline is retrieval of the logged queries over the logged
    passages against the teacher's top-k (metrics/retrieval_vs_teacher.py); without, neighbour agreement. With
    a judge and the `texts` too, the headline is retrieval on the judge's grades of the pooled top-10s, relative
    to the teacher's (metrics/retrieval_judged.py); the teacher-reference figures stay beside it.
    """
    boot = _Bootstrap(bootstrap_samples=settings.bootstrap_samples, confidence=settings.confidence, seed=seed)
    name = metric_name_for(workload_type)
    if workload_type == "classification":
        report = classification_report(list(references), list(predictions), **boot)
        return Scored(name, report["f1_vs_teacher"], _ci(report["f1_vs_teacher_ci"]), report, report["unparseable"])
    if workload_type == "tool_calling":
        report = tool_calling_report(list(references), list(predictions), **boot)
        return Scored(
            name, report["name_args_accuracy"], _ci(report["name_args_accuracy_ci"]), report, report["unparseable"]
        )
    if workload_type == "embedding":
        report = embedding_report(
            np.asarray(references), np.asarray(predictions), matryoshka_dims=matryoshka_dims, **boot
        )
        retrieval = retrieval_vs_teacher(np.asarray(references), np.asarray(predictions), roles,
                                         matryoshka_dims=matryoshka_dims, **boot) if roles is not None else None
        if retrieval is None:  # no logged queries (or too few passages): neighbour agreement is the headline
            return Scored(name, report["score"], _ci(report["score_ci"]), {"scorer": "neighbours", **report}, 0)
        metrics = {"scorer": "retrieval", **report, "neighbour_score": report["score"],
                   "neighbour_score_ci": report["score_ci"], "score": retrieval["score"], "retrieval": retrieval}
        judged = _judged(judge, references, predictions, roles, texts, boot, grades_dir) if judge is not None else None
        if judged is not None and judged["score"] is not None:
            metrics.update(scorer="retrieval_judged", score=judged["score"], judged_retrieval=judged)
            return Scored(name, judged["score"], _ci(judged["score_ci"]), metrics, 0)
        return Scored(name, retrieval["score"], _ci(retrieval["score_ci"]), metrics, 0)
    if workload_type == "chat":
        # The lexical metric is cheap, so it is reported even when a judge gives the headline.
        lexical = text_report(list(references), list(predictions), **boot)
        if judge is None:
            return Scored(
                name,
                lexical["token_f1"],
                _ci(lexical["token_f1_ci"]),
                {"scorer": "lexical", **lexical},
                lexical["unparseable"],
            )
        if requests is None:
            raise ValueError("judging chat answers needs each record's request messages (requests=...)")
        judged = judge_report(judge, requests, list(references), list(predictions), **boot)
        return Scored(
            name,
            judged["judge_score"],
            _ci(judged["judge_score_ci"]),
            {"scorer": "judge", **lexical, **judged},
            judged["unparseable"],
        )
    raise ValueError(f"unknown workload type {workload_type!r}")


def _judged(judge: JudgeClient, references: Any, predictions: Any, roles: Sequence[str] | None,
            texts: Sequence[str] | None, boot: _Bootstrap, grades_dir: Path | None) -> dict[str, Any] | None:
    """Retrieval on the relevance judge's grades (the judge's endpoint, graded 0-3), when the texts are known;
    grades kept in `grades_dir` when given, so every candidate evaluated on the split shares them."""
    if roles is None or texts is None:
        return None
    from services.models.students.embedding_distill.relevance import RelevanceJudge

    return judged_retrieval(np.asarray(references), np.asarray(predictions), roles, texts,
                            RelevanceJudge(judge, cache_dir=grades_dir).grade, **boot)


def judge_from_settings(settings: EvaluationSettings) -> JudgeClient | None:
    """The configured judge, or None when judging is off (chat then falls back to the lexical metric)."""
    return JudgeClient.from_settings(settings.judge) if settings.judge.enabled else None
