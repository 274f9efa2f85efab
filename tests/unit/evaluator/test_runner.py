"""The evaluation runner end to end on tiny models: base / ICL / customized, saved typed results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.customizer.service import train_candidate
from services.domain.errors import InsufficientData
from services.domain.evaluation import EvalKind, EvalResult
from services.evaluator.runner import evaluate, result_path
from tests.model_plane import TOPICS, ModelPlane, model_plane


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> ModelPlane:
    return model_plane(tmp_path_factory.mktemp("eval"), records=240, epochs=10, learning_rate=5e-3, finetune="full",
                       early_stopping_patience=0)


def test_customized_classifier_is_scored_against_the_teacher(plane: ModelPlane) -> None:
    artifact = train_candidate(plane.settings, "tiny-clf", plane.dataset.dataset_id)
    result = evaluate(plane.settings, candidate="tiny-clf", dataset_id=plane.dataset.dataset_id, kind=EvalKind.CUSTOMIZED)
    assert result.applicable and result.metric_name == "f1_vs_teacher"
    assert result.n == plane.dataset.splits["eval"]["count"]
    assert result.artifact_id == artifact.artifact_id
    assert result.score is not None and result.ci is not None and result.ci[0] <= result.score <= result.ci[1]
    assert result.score > 0.5, result.metrics  # 4 keyword topics; chance is ~0.25
    assert set(result.metrics["per_class"]) <= set(TOPICS)
    assert result.latency is not None and result.latency.n == result.n and result.latency.p95_ms >= result.latency.p50_ms
    assert result.model_size_bytes == artifact.size_bytes
    saved = EvalResult.model_validate_json(result_path(Path(plane.settings.artifacts.root), result).read_text())
    assert saved == result
    public = result.to_public()
    assert public["f1_vs_teacher"] == result.score and public["f1_vs_teacher_ci"] == list(result.ci)


def test_base_and_icl_do_not_apply_to_an_encoder_classifier(plane: ModelPlane) -> None:
    for kind in (EvalKind.BASE, EvalKind.ICL):
        result = evaluate(plane.settings, candidate="tiny-clf", dataset_id=plane.dataset.dataset_id, kind=kind)
        assert not result.applicable and result.score is None
        assert "does not apply" in (result.reason or "")


@pytest.mark.parametrize("kind", [EvalKind.BASE, EvalKind.ICL])
def test_causal_lm_base_and_icl_use_constrained_label_scoring(plane: ModelPlane, kind: EvalKind) -> None:
    result = evaluate(plane.settings, candidate="tiny-lora", dataset_id=plane.dataset.dataset_id, kind=kind)
    assert result.applicable and result.decoding == "constrained"
    assert result.unparseable == 0, "constrained scoring always yields a label"
    assert result.score is not None and 0 <= result.score <= 1
    assert result.model_size_bytes and result.model_size_bytes > 0


def test_generate_decoding_counts_unparseable_answers(plane: ModelPlane) -> None:
    settings = plane.settings.model_copy(update={"evaluation": plane.settings.evaluation.model_copy(
        update={"decoding": "generate", "max_eval_records": 6})})
    result = evaluate(settings, candidate="tiny-lora", dataset_id=plane.dataset.dataset_id, kind=EvalKind.BASE)
    assert result.decoding == "generate" and result.n == 6
    # A random tiny model does not write [[[label]]]: its answers are unparseable and count as wrong.
    assert result.unparseable == 6 and result.score == 0


def test_customized_without_an_artifact_says_how_to_train(plane: ModelPlane) -> None:
    with pytest.raises(InsufficientData, match="flywheel train --dataset"):
        evaluate(plane.settings, candidate="tiny-lora", dataset_id=plane.dataset.dataset_id, kind=EvalKind.CUSTOMIZED)


def test_results_are_plain_json(plane: ModelPlane) -> None:
    paths = list((Path(plane.settings.artifacts.root) / "evaluations").rglob("*.json"))
    assert paths and all(json.loads(p.read_text())["candidate"] for p in paths)


def _tool_logs(n: int) -> list[dict]:
    tools = [{"type": "function", "function": {"name": "get_quote", "parameters": {"type": "object"}}},
             {"type": "function", "function": {"name": "get_news", "parameters": {"type": "object"}}}]
    logs = []
    for i in range(n):
        name = "get_quote" if i % 2 else "get_news"
        logs.append({
            "workload_id": "desk_tools", "client_id": "c", "timestamp": 1_760_000_000 + i,
            "request": {"model": "t", "tools": tools,
                        "messages": [{"role": "user", "content": f"{name.split('_')[1]} for ticker T{i}"}]},
            "response": {"choices": [{"message": {"role": "assistant", "content": None, "tool_calls": [
                {"id": f"c{i}", "type": "function",
                 "function": {"name": name, "arguments": json.dumps({"ticker": f"T{i}"})}}]}}]},
        })
    return logs


def test_tool_calling_candidate_is_scored_on_names_and_arguments(tmp_path: Path) -> None:
    plane = model_plane(tmp_path, logs=_tool_logs(80), workload_id="desk_tools", max_steps=3)
    settings = plane.settings.model_copy(update={"evaluation": plane.settings.evaluation.model_copy(
        update={"max_eval_records": 4})})
    assert plane.dataset.workload_type == "tool_calling"
    train_line = next(plane.dataset.read_split("train"))
    assert train_line["messages"][-1]["tool_calls"], "training keeps tool calls intact"
    train_candidate(settings, "tiny-lora", plane.dataset.dataset_id)
    result = evaluate(settings, candidate="tiny-lora", dataset_id=plane.dataset.dataset_id, kind=EvalKind.CUSTOMIZED)
    assert result.metric_name == "score_vs_teacher" and result.decoding == "generate"
    assert {"name_accuracy", "name_args_accuracy"} <= set(result.metrics)
    assert result.n == 4 and 0 <= (result.score or 0) <= 1


def test_chat_candidate_without_a_judge_gets_the_lexical_score(tmp_path: Path) -> None:
    logs = [{"workload_id": "qa", "client_id": "c", "timestamp": 1_760_000_000 + i,
             "request": {"model": "t", "messages": [{"role": "user", "content": f"summarize filing {i}"}]},
             "response": {"choices": [{"message": {"role": "assistant", "content": f"revenue rose {i} percent"}}]}}
            for i in range(80)]
    plane = model_plane(tmp_path, logs=logs, workload_id="qa")
    settings = plane.settings.model_copy(update={"evaluation": plane.settings.evaluation.model_copy(
        update={"max_eval_records": 4})})
    result = evaluate(settings, candidate="tiny-lora", dataset_id=plane.dataset.dataset_id, kind=EvalKind.BASE)
    assert result.workload_type == "chat" and result.metric_name == "score_vs_teacher"
    assert "token_f1" in json.dumps(result.metrics)


def test_embedding_student_is_scored_on_neighbour_agreement(tmp_path: Path) -> None:
    from tests.model_plane import embedding_logs

    plane = model_plane(tmp_path, logs=embedding_logs(120), workload_id="filing_search", max_steps=10)
    assert plane.dataset.workload_type == "embedding"
    settings = plane.settings.model_copy(update={"distillation": plane.settings.distillation.model_copy(
        update={"matryoshka_dims": [8]})})
    train_candidate(settings, "tiny-emb", plane.dataset.dataset_id)
    result = evaluate(settings, candidate="tiny-emb", dataset_id=plane.dataset.dataset_id, kind=EvalKind.CUSTOMIZED)
    assert result.applicable and result.metric_name == "score_vs_teacher"
    assert result.n == plane.dataset.splits["eval"]["count"] and result.score is not None
    assert "8" in json.dumps(result.metrics), "truncated (Matryoshka) dims are scored too"
    base = evaluate(settings, candidate="tiny-emb", dataset_id=plane.dataset.dataset_id, kind=EvalKind.BASE)
    assert not base.applicable and "embedding student" in (base.reason or "")


def test_embedding_student_is_scored_on_retrieval_of_the_logged_queries(tmp_path: Path) -> None:
    """With queries and passages in the logs (input_type), the headline is retrieval against the teacher's top-k,
    with a CI; the neighbour agreement stays as a secondary figure."""
    from tests.model_plane import retrieval_logs

    plane = model_plane(tmp_path, logs=retrieval_logs(150), workload_id="filing_search", max_steps=6)
    settings = plane.settings.model_copy(update={"distillation": plane.settings.distillation.model_copy(
        update={"matryoshka_dims": [8], "listwise_weight": 1.0, "mining_rounds": 2, "listwise_candidates": 6,
                "hard_negatives": 2})})
    artifact = train_candidate(settings, "tiny-emb", plane.dataset.dataset_id)
    assert [r["round"] for r in artifact.metrics["ranking"]["rounds"]] == [0, 1]
    result = evaluate(settings, candidate="tiny-emb", dataset_id=plane.dataset.dataset_id, kind=EvalKind.CUSTOMIZED)
    retrieval = result.metrics["retrieval"]
    assert result.metrics["scorer"] == "retrieval" and result.metric_name == "score_vs_teacher"
    assert retrieval["queries"] > 0 and retrieval["passages"] >= 2 and retrieval["reference"].startswith("teacher top-")
    assert result.score == retrieval["ndcg_at_10"] and result.ci is not None
    assert result.ci[0] <= result.score <= result.ci[1]
    assert "8" in retrieval["matryoshka"] and 0 <= result.metrics["neighbour_score"] <= 1


def test_max_eval_records_is_a_stratified_random_sample() -> None:
    from collections import Counter

    from services.evaluator.runner import stratified_sample

    def record(label: str, i: int) -> dict:  # type: ignore[type-arg]
        return {"request": {"messages": [{"role": "user", "content": f"h{i}"}]},
                "response": {"choices": [{"message": {"role": "assistant", "content": f"[[[{label}]]]"}}]}}

    # newest first and grouped, as a split can be: the first 50 would all be "A"
    records = [record("A", i) for i in range(300)] + [record("B", i) for i in range(100)]
    sample = stratified_sample(records, 40, seed=0)
    counts = Counter(r["response"]["choices"][0]["message"]["content"] for r in sample)
    assert len(sample) == 40 and counts == {"[[[A]]]": 30, "[[[B]]]": 10}
    assert sample != records[:40] and stratified_sample(records, 40, seed=0) == sample


def test_baselines_are_sampled_and_a_spent_budget_stops_an_evaluation(plane: ModelPlane) -> None:
    """A causal LM's base evaluation is a baseline the decision never promotes: a stratified sample; and a stage
    whose time budget runs out is scored on what it answered, and says so. Its confidence feeds the selective block."""
    sampled = plane.settings.model_copy(update={"evaluation": plane.settings.evaluation.model_copy(
        update={"baseline_max_records": 10})})
    base = evaluate(sampled, candidate="tiny-lora", dataset_id=plane.dataset.dataset_id, kind=EvalKind.BASE)
    assert base.n == 10 and base.metrics["selective"]["n_report"] == 10
    assert base.metrics["selective"]["method"].startswith("fixed-sequence")
    hurried = plane.settings.model_copy(update={"evaluation": plane.settings.evaluation.model_copy(
        update={"stage_budget_s": 1e-9, "baseline_max_records": None})})
    stopped = evaluate(hurried, candidate="tiny-lora", dataset_id=plane.dataset.dataset_id, kind=EvalKind.BASE)
    assert stopped.n == 1 and stopped.metrics["stopped_by_budget"]["planned"] == plane.dataset.splits["eval"]["count"]
