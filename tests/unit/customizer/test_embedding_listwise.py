"""Ranking distillation: the listwise loss, hard-negative mining, query/passage roles, and a real tiny run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from services.domain.embeddings import input_roles
from services.domain.settings import DistillationSettings
from services.evaluator.metrics.retrieval_vs_teacher import retrieval_vs_teacher
from services.models.students.embedding_distill.listwise import listwise_kl, mine_candidates
from services.models.students.embedding_distill.runtime import Embedder
from services.models.students.embedding_distill.trainer import EmbeddingDistillTrainer
from services.models.training.base import TrainControl
from tests.unit.customizer.test_embedding_distill import (
    make_request,
    random_texts,
    student_dir,  # noqa: F401 - the module-scoped fixture
    teacher_vectors,
    write_dataset,
)


def test_listwise_kl_is_zero_for_the_teacher_and_positive_otherwise() -> None:
    torch.manual_seed(0)
    teacher = torch.nn.functional.normalize(torch.randn(10, 16), dim=-1)
    same = listwise_kl(teacher[:3], teacher[3:], teacher[:3], teacher[3:], temperature=0.05)
    assert float(same) == pytest.approx(0.0, abs=1e-6)
    student = torch.randn(10, 16, requires_grad=True)
    loss = listwise_kl(student[:3], student[3:], teacher[:3], teacher[3:], temperature=0.05)
    assert float(loss.detach()) > 0
    loss.backward()
    assert student.grad is not None and torch.isfinite(student.grad).all()
    # Only the ranking counts: a student whose vectors are the teacher's scaled is still perfect.
    scaled = listwise_kl(teacher[:3] * 3, teacher[3:] * 0.5, teacher[:3], teacher[3:], temperature=0.05)
    assert float(scaled) == pytest.approx(0.0, abs=1e-6)


def test_mining_keeps_the_teachers_top_and_adds_the_students_mistakes() -> None:
    eye = torch.eye(4)
    teacher_q, teacher_p = eye[:1], eye  # the teacher ranks passage 0 first
    student_q = torch.tensor([[0.0, 0.0, 1.0, 0.5]])  # the student prefers passages 2 then 3
    lists = mine_candidates(teacher_q, teacher_p, student_q, eye, candidates=3, hard_negatives=2)
    assert lists == [[0, 2, 3]]
    no_mining = mine_candidates(teacher_q, teacher_p, student_q, eye, candidates=2, hard_negatives=0)
    assert no_mining[0][0] == 0 and len(no_mining[0]) == 2


def test_roles_come_from_input_type_or_the_documented_rule() -> None:
    assert input_roles({"input": "a b", "input_type": "passage"}, ["a b"]) == ["passage"]
    assert input_roles({"input": ["a", "b", "c"], "input_type": "query"}, ["a", "b", "c"]) == ["query"] * 3
    assert input_roles({"input": "what was capex"}, ["what was capex"]) == ["query"]  # single and short
    assert input_roles({"input": ["q", "p"]}, ["q", "p"]) == ["query", "passage"]  # the pair convention
    assert input_roles({"input": ["a", "b", "c"]}, ["a", "b", "c"]) == ["passage"] * 3  # a batch
    long_text = " ".join(["w"] * 40)
    assert input_roles({"input": long_text}, [long_text]) == ["passage"]
    assert input_roles({"input": long_text}, [long_text], query_max_words=50) == ["query"]


def ranking_logs(queries: list[str], passages: list[str], dim: int) -> list[dict[str, Any]]:
    """Queries one per call (input_type query), passages in batches of 8 (input_type passage), teacher vectors logged."""
    records = []
    for q in queries:
        records.append({"workload_id": "emb", "client_id": "c1", "timestamp": 1_760_000_000,
                        "request": {"model": "teacher-embed", "input": q, "input_type": "query"},
                        "response": {"data": [{"index": 0, "embedding": teacher_vectors([q], dim)[0].tolist()}]}})
    for start in range(0, len(passages), 8):
        batch = passages[start:start + 8]
        records.append({"workload_id": "emb", "client_id": "c1", "timestamp": 1_760_000_000,
                        "request": {"model": "teacher-embed", "input": batch, "input_type": "passage"},
                        "response": {"data": [{"index": i, "embedding": v.tolist()}
                                              for i, v in enumerate(teacher_vectors(batch, dim))]}})
    return records


def test_listwise_rounds_train_the_teachers_ranking(tmp_path: Path, student_dir: Path) -> None:  # noqa: F811
    dim = 48
    queries, passages = random_texts(48, seed=11), random_texts(96, seed=12)
    val_q, val_p = random_texts(12, seed=13), random_texts(24, seed=14)
    dataset = write_dataset(tmp_path, {"train": ranking_logs(queries, passages, dim),
                                       "val": ranking_logs(val_q, val_p, dim)})
    weights = DistillationSettings(matryoshka_dims=[16], listwise_weight=1.0, listwise_temperature=0.1,
                                   listwise_candidates=8, hard_negatives=3, mining_rounds=2)
    request = make_request(tmp_path, student_dir, dataset, distillation=weights, max_steps=30, batch_size=8)
    artifact = EmbeddingDistillTrainer().train(request, TrainControl())
    ranking = artifact.metrics["ranking"]
    assert [r["round"] for r in ranking["rounds"]] == [0, 1]
    assert ranking["queries"] == 48 and ranking["passages"] == 96
    assert all(r["hard_negatives"] > 0 for r in ranking["rounds"]), "each round mines the student's mistakes"
    assert artifact.metrics["steps"] == 15, "the last round's steps: 30 split over 2 rounds"
    assert not list(request.work_dir.glob("round-*")), "round folders go once the artifact is published"

    texts = queries + passages
    roles = ["query"] * len(queries) + ["passage"] * len(passages)
    teacher = teacher_vectors(texts, dim)
    before = retrieval_vs_teacher(teacher, Embedder(student_dir).encode(texts), roles, bootstrap_samples=0)
    after = retrieval_vs_teacher(teacher, Embedder(artifact.path).encode(texts), roles, bootstrap_samples=0)
    assert before is not None and after is not None
    assert after["ndcg_at_10"] > before["ndcg_at_10"] + 0.05, (before["ndcg_at_10"], after["ndcg_at_10"])
    assert np.isfinite(after["mrr_at_5"])


def test_student_vectors_keep_no_autograd_graph(student_dir: Path) -> None:  # noqa: F811
    """Mining and the projection fit read the student's vectors of every train text: with a graph kept per
    batch, the bench's 900 texts grew the process past 22 GB (a decorator once slipped onto `padded`)."""
    from transformers import AutoModel, AutoTokenizer

    from services.models.students.embedding_distill.model import DistillStudent, student_vectors
    from services.models.students.embedding_distill.runtime import SentenceTransformerLayout

    layout = SentenceTransformerLayout(student_dir)
    encoder = AutoModel.from_pretrained(str(layout.transformer_path))
    tokenizer = AutoTokenizer.from_pretrained(str(layout.transformer_path))
    model = DistillStudent(encoder, pooling=layout.pooling, student_dim=encoder.config.hidden_size, teacher_dim=48)
    model.train()
    token_ids = tokenizer(random_texts(5, seed=3))["input_ids"]
    vectors = student_vectors(model, token_ids, [0, 1, 2, 3, 4], pad_id=tokenizer.pad_token_id, batch_size=2)
    assert vectors.shape == (5, encoder.config.hidden_size)
    assert vectors.grad_fn is None and not vectors.requires_grad
    assert model.training, "the model goes back to training mode"


def test_a_soup_serves_the_average_of_the_ranked_and_the_vector_students(tmp_path: Path, student_dir: Path) -> None:  # noqa: F811
    """distillation.soup: the served weights are the mean of the ranking rounds' student and the vector-loss
    student trained from the same start, each exactly what it would be trained alone (each run reseeds)."""
    from safetensors.torch import load_file

    dim = 48
    dataset = write_dataset(tmp_path, {"train": ranking_logs(random_texts(24, seed=21), random_texts(48, seed=22), dim),
                                       "val": ranking_logs(random_texts(6, seed=23), random_texts(16, seed=24), dim)})
    ranked = DistillationSettings(matryoshka_dims=[16], listwise_weight=1.0, listwise_temperature=0.1,
                                  listwise_candidates=6, hard_negatives=2, mining_rounds=2, soup=False,
                                  soup_batch_size=16)

    def train(name: str, weights: DistillationSettings, batch_size: int) -> Any:
        request = make_request(tmp_path / name, student_dir, dataset, distillation=weights, max_steps=12,
                               batch_size=batch_size)
        return request, EmbeddingDistillTrainer().train(request, TrainControl())

    request, soup = train("soup", ranked.model_copy(update={"soup": True}), 8)
    _, alone = train("ranked", ranked, 8)
    _, vector = train("vector", ranked.model_copy(update={"listwise_weight": 0.0}), 16)

    found = soup.metrics["ranking"]["soup"]
    assert found["ingredients"] == ["ranking rounds", "vector losses"] and found["vector_steps"] == 12
    assert soup.metrics["steps"] == 6, "the ranked student's own figures: its last round's steps"
    assert not (request.work_dir / "soup-vector").exists(), "the ingredient's folder goes with the round folders"
    weights = [load_file(str(Path(a.path) / "model.safetensors")) for a in (soup, alone, vector)]
    assert weights[0].keys() == weights[1].keys()
    moved = 0
    for key, served in weights[0].items():
        if served.is_floating_point():
            torch.testing.assert_close(served, (weights[1][key] + weights[2][key]) / 2, rtol=1e-4, atol=1e-5)
            moved += int(not torch.equal(weights[1][key], weights[2][key]))
    assert moved > 10, "the two ingredients differ, so the average is a third model"


def test_average_state_dicts_means_floats_keeps_integers_and_refuses_mismatches() -> None:
    from services.models.students.embedding_distill.soup import average_state_dicts

    a = {"w": torch.tensor([1.0, 3.0]), "ids": torch.tensor([0, 1])}
    b = {"w": torch.tensor([3.0, 5.0]), "ids": torch.tensor([0, 1])}
    soup = average_state_dicts([a, b])
    assert torch.equal(soup["w"], torch.tensor([2.0, 4.0])) and torch.equal(soup["ids"], torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="keys"):
        average_state_dicts([a, {"w": b["w"]}])
    with pytest.raises(ValueError, match="shapes"):
        average_state_dicts([a, {"w": torch.zeros(3), "ids": b["ids"]}])


def test_average_students_averages_the_encoder_and_the_projection(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    from services.models.students.embedding_distill.soup import average_students

    folders = []
    for i, value in enumerate((1.0, 3.0)):
        folder = tmp_path / f"student-{i}"
        (folder / "projection").mkdir(parents=True)
        save_file({"w": torch.full((2,), value)}, str(folder / "model.safetensors"))
        save_file({"weight": torch.full((2, 2), -value)}, str(folder / "projection" / "model.safetensors"))
        (folder / "config.json").write_text(f'{{"student": {i}}}', encoding="utf-8")
        folders.append(folder)
    out = average_students(folders, tmp_path / "soup")
    assert torch.equal(load_file(str(out / "model.safetensors"))["w"], torch.full((2,), 2.0))
    assert torch.equal(load_file(str(out / "projection" / "model.safetensors"))["weight"], torch.full((2, 2), -2.0))
    assert (out / "config.json").read_text(encoding="utf-8") == '{"student": 0}', "the first student's other files"
