"""Embedding retrieval scored on an LLM judge's grades: known answers, and the whole path through a real local judge."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest

from services.domain.settings import EvaluationSettings
from services.evaluator.judge import JudgeClient
from services.evaluator.metrics.retrieval_judged import judged_retrieval
from services.evaluator.scoring import score_predictions
from tests.unit.evaluator.test_judge import JudgeServer, server  # noqa: F401 - the fixture

QUERIES, PASSAGES = ["q0", "q1", "q2", "q3"], ["p0", "p1", "p2", "p3", "p4", "p5"]
TEXTS = QUERIES + PASSAGES
ROLES = ["query"] * 4 + ["passage"] * 6
GRADES = {("q0", "p0"): 3, ("q1", "p1"): 3, ("q2", "p2"): 3, ("q2", "p5"): 1}  # q3: nothing relevant


def vectors() -> tuple[np.ndarray, np.ndarray]:
    """The teacher ranks each query's answer first; the student puts p3 above q2's answer p2."""
    eye = np.eye(8)
    passages = eye[:6]
    teacher = np.vstack([eye[0] + 0.01, eye[1] + 0.01, eye[2] + 0.3 * eye[5], eye[4], passages])
    student = np.vstack([eye[0], eye[1], 0.9 * eye[3] + 0.5 * eye[2] + 0.1 * eye[5], eye[4], passages])
    return teacher, student


def grade(pairs: Any) -> list[int | None]:
    return [GRADES.get(pair, 0) for pair in pairs]


def test_the_student_is_scored_against_the_teacher_on_the_judges_grades() -> None:
    teacher, student = vectors()
    report = judged_retrieval(teacher, student, ROLES, TEXTS, grade, bootstrap_samples=200)
    assert report is not None
    assert report["queries_judged"] == 3 and report["queries_without_a_relevant_passage"] == 1
    assert report["pairs_graded"] == 4 * 6, "every passage is in a top-10 of six"
    assert report["teacher"]["ndcg_at_10"] == pytest.approx(1.0)
    ideal_q2 = 3 + 1 / math.log2(3)
    student_q2 = (3 / math.log2(3) + 1 / math.log2(4)) / ideal_q2  # p3 first, p2 second, p5 third
    assert report["student"]["ndcg_at_10"] == pytest.approx((1 + 1 + student_q2) / 3)
    assert report["score"] == pytest.approx((2 + student_q2) / 3)
    assert report["student"]["mrr_at_5"] == pytest.approx((1 + 1 + 0.5) / 3)
    low, high = report["score_ci"]
    assert low <= report["score"] <= high <= 1.0


def test_nothing_to_judge_gives_no_report() -> None:
    teacher, student = vectors()
    assert judged_retrieval(teacher, student, ROLES, TEXTS, lambda pairs: [0] * len(pairs)) is None
    assert judged_retrieval(teacher[:5], student[:5], ["query"] * 5, TEXTS[:5], grade) is None
    unreadable = judged_retrieval(teacher, student, ROLES, TEXTS, lambda pairs: [None] + grade(pairs[1:]),
                                  bootstrap_samples=0)
    assert unreadable is not None and unreadable["unreadable"] == 1


def test_an_embedding_evaluation_with_a_judge_scores_on_its_grades(server: JudgeServer, tmp_path: Path) -> None:  # noqa: F811
    def reply(body: dict[str, Any]) -> str:
        found = re.search(r"## Query\n(.*?)\n\n## Passage\n(.*?)\n\n", body["messages"][-1]["content"], re.S)
        assert found is not None
        return f"Relevance: {GRADES.get((found.group(1), found.group(2)), 0)}"

    server.reply = reply
    judge = JudgeClient(openai.OpenAI(base_url=server.url, api_key="k", max_retries=0), model="judge-model")
    teacher, student = vectors()
    settings = EvaluationSettings(bootstrap_samples=200)
    scored = score_predictions("embedding", teacher, student, settings, judge, roles=ROLES, texts=TEXTS)
    assert scored.metrics["scorer"] == "retrieval_judged"
    assert scored.score == pytest.approx(scored.metrics["judged_retrieval"]["score"]) and scored.score < 1
    assert scored.metrics["retrieval"]["reference"].startswith("teacher top-"), "the teacher-reference figures stay"
    assert len(server.requests) == 24
    without = score_predictions("embedding", teacher, student, settings, None, roles=ROLES, texts=TEXTS)
    assert without.metrics["scorer"] == "retrieval"

    # With a grades folder (the runner's, beside the split's evaluations) a second candidate pays only for new pairs.
    first = score_predictions("embedding", teacher, student, settings, judge, roles=ROLES, texts=TEXTS,
                              grades_dir=tmp_path)
    asked = len(server.requests)
    again = score_predictions("embedding", teacher, teacher, settings, judge, roles=ROLES, texts=TEXTS,
                              grades_dir=tmp_path)
    assert len(server.requests) == asked, "every pair of the teacher's pool was graded already"
    assert again.score == pytest.approx(1.0) and first.score == pytest.approx(scored.score)
