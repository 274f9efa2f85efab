"""The LLM relevance judge of ranking distillation, against a real local OpenAI-compatible stand-in judge.

The stand-in grades by word overlap between the query and the passage (a deterministic stand-in for an
LLM), over HTTP through the official `openai` client, so the grading, its cache, its retries and the
trainer's judged term all run for real.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import openai
import pytest
import torch
from pydantic import SecretStr

from services.domain.errors import ExternalServiceError
from services.domain.settings import DistillationSettings, JudgeSettings
from services.models.runtime.llm_endpoint import ChatEndpoint
from services.models.students.embedding_distill.listwise import judged_listwise
from services.models.students.embedding_distill.relevance import RelevanceJudge, parse_relevance
from services.models.students.embedding_distill.trainer import EmbeddingDistillTrainer
from services.models.training.base import TrainControl
from tests.unit.customizer.test_embedding_distill import (
    make_request,
    random_texts,
    student_dir,  # noqa: F401 - the module-scoped fixture
    write_dataset,
)
from tests.unit.customizer.test_embedding_listwise import ranking_logs
from tests.unit.evaluator.test_judge import JudgeServer, server  # noqa: F401 - the fixture


def overlap_grade(body: dict[str, Any]) -> str:
    """The stand-in judge: grade = shared words between query and passage, capped at 3."""
    text = body["messages"][-1]["content"]
    query = re.search(r"## Query\n(.*?)\n\n## Passage", text, re.S)
    passage = re.search(r"## Passage\n(.*?)\n\nGrade", text, re.S)
    assert query and passage, text
    shared = set(query.group(1).split()) & set(passage.group(1).split())
    return f"They share {len(shared)} words.\nRelevance: {min(3, len(shared))}"


def endpoint(server: JudgeServer, **kwargs: Any) -> ChatEndpoint:  # noqa: F811
    client = openai.OpenAI(base_url=server.url, api_key="k", timeout=5, max_retries=0)
    return ChatEndpoint(client, model="judge-model", backoff_s=0.01, sleep=lambda s: None, **kwargs)


def test_grades_are_read_from_the_replies_judges_write() -> None:
    assert parse_relevance("Partly answers.\nRelevance: 2") == 2
    assert parse_relevance("**Relevance:** 3") == 3
    assert parse_relevance('{"relevance": 1}') == 1
    assert parse_relevance("0") == 0
    assert parse_relevance("Relevance: 1 at first, but on reflection\nRelevance: 3") == 3, "the last one stated"
    assert parse_relevance("Relevance: 7") is None, "off the 0-3 scale: unreadable, not clipped"
    assert parse_relevance("Relevance: 2.5") is None
    assert parse_relevance("I cannot tell.") is None and parse_relevance(None) is None


def test_judged_term_pulls_the_student_toward_the_graded_passages() -> None:
    passages = torch.eye(4)
    grades = torch.tensor([[0.0, 3.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])  # the second query has nothing graded
    toward = judged_listwise(torch.tensor([[0.0, 1.0, 0.2, 0.0], [1.0, 0, 0, 0]]), passages, grades, temperature=0.1)
    away = judged_listwise(torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 0, 0, 0]]), passages, grades, temperature=0.1)
    assert float(toward) < float(away)
    student = torch.randn(2, 4, requires_grad=True)
    judged_listwise(student, passages, grades, temperature=0.1).backward()
    assert student.grad is not None and torch.all(student.grad[1] == 0), "an ungraded query adds nothing"
    nothing = judged_listwise(student, passages, torch.zeros(2, 4), temperature=0.1)
    assert float(nothing) == 0.0


def test_the_judge_grades_once_per_pair_and_keeps_its_grades_on_disk(tmp_path: Path, server: JudgeServer) -> None:  # noqa: F811
    server.reply = overlap_grade
    judge = RelevanceJudge(endpoint(server), cache_dir=tmp_path)
    pairs = [("apple revenue 2022", "apple revenue grew in 2022"), ("capex", "dividends were paid"),
             ("apple revenue 2022", "apple revenue grew in 2022")]
    assert judge.grade(pairs) == [3, 0, 3]
    assert len(server.requests) == 2, "a repeated pair is asked once"
    assert server.requests[0]["temperature"] == 0 and server.requests[0]["model"] == "judge-model"
    again = RelevanceJudge(endpoint(server), cache_dir=tmp_path)  # a resumed run
    assert again.grade(pairs[:2]) == [3, 0] and len(server.requests) == 2, "the cache on disk answers"

    server.reply = lambda body: "Hard to say."
    assert judge.grade([("q", "new passage")]) == [None] and judge.unparsed == 1, "unreadable: left out, counted"


def test_a_failing_judge_is_retried_then_fails_the_run_clearly(tmp_path: Path, server: JudgeServer) -> None:  # noqa: F811
    server.reply = overlap_grade
    server.failures = [(503, {}), (429, {"Retry-After": "0"})]
    judge = RelevanceJudge(endpoint(server), cache_dir=tmp_path)
    assert judge.grade([("a b", "a b c")]) == [2], "503 and 429 are retried"
    server.failures = [(401, {})]
    with pytest.raises(ExternalServiceError, match="refused"):
        judge.grade([("x", "y")])


def test_listwise_rounds_train_on_the_judges_grades(tmp_path: Path, student_dir: Path, server: JudgeServer) -> None:  # noqa: F811
    server.reply = overlap_grade
    dim = 48
    queries, passages = random_texts(24, seed=21), random_texts(48, seed=22)
    dataset = write_dataset(tmp_path, {"train": ranking_logs(queries, passages, dim),
                                       "val": ranking_logs(random_texts(6, seed=23), random_texts(12, seed=24), dim)})
    weights = DistillationSettings(matryoshka_dims=[16], listwise_weight=1.0, listwise_temperature=0.1,
                                   listwise_candidates=6, hard_negatives=2, mining_rounds=2, judge_relevance=True)
    request = dataclasses.replace(
        make_request(tmp_path, student_dir, dataset, distillation=weights, max_steps=8, batch_size=8),
        relevance_judge=JudgeSettings(enabled=True, base_url=server.url, model="judge-model",
                                      api_key=SecretStr("sk-secret")))
    artifact = EmbeddingDistillTrainer().train(request, TrainControl())
    rounds = artifact.metrics["ranking"]["rounds"]
    assert all(r["judged"]["pairs"] == 24 * 6 for r in rounds), rounds
    assert all(r["judged"]["unreadable"] == 0 for r in rounds)
    asked = len(server.requests)
    assert 24 * 6 <= asked <= 2 * 24 * 6, "each distinct pair once: round 2 re-uses round 1's grades"
    assert any(r["judged"]["relevant"] > 0 for r in rounds), "the random texts share words with some passages"
    assert request.hyperparameters()["relevance_judge"]["model"] == "judge-model"
    assert "sk-secret" not in json.dumps(request.hyperparameters()), "the run's identity never holds the key"
    assert server.headers[0]["authorization"] == "Bearer sk-secret"
