"""Embedding distillation on a tiny random BERT (word-level vocabulary) against a bag-of-words teacher.

The teacher embeds a text as the normalised mean of fixed random word vectors, so a mean-pooling
student can learn its geometry; runs take a second or two. One slow test distils the real mpnet
teacher into the real MiniLM on Twitter finance headlines.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from services.domain.artifacts import StudentKind
from services.domain.datasets import DatasetRef
from services.domain.errors import TrainingCancelled, TrainingFailed
from services.domain.settings import DistillationSettings, LoraSettings, TrainingSettings, default_models_dir
from services.models.students.embedding_distill.data import decode_embedding, embed_with_cache, read_distill_data
from services.models.students.embedding_distill.runtime import Embedder
from services.models.students.embedding_distill.trainer import PROJECTION_DIR, EmbeddingDistillTrainer, distill_losses
from services.models.training.base import TrainControl, TrainRequest

REPO = Path(__file__).resolve().parents[3]
WORDS = [f"w{i}" for i in range(60)]


def tiny_encoder(directory: Path, *, hidden: int = 32, seed: int = 0) -> Path:
    """A random 2-layer BERT with a word-level tokenizer, saved as a sentence-transformers directory."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    vocab = {token: i for i, token in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *WORDS])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]",
                                        cls_token="[CLS]", sep_token="[SEP]")
    tokenizer.save_pretrained(str(directory))
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=2, max_position_embeddings=64, pad_token_id=0)
    BertModel(config).save_pretrained(str(directory))
    (directory / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]))
    (directory / "1_Pooling").mkdir(exist_ok=True)
    (directory / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": hidden, "pooling_mode_mean_tokens": True}))
    (directory / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 32, "do_lower_case": False}))
    return directory


def teacher_vectors(texts: list[str], dim: int) -> np.ndarray:
    """Bag-of-words teacher: normalised mean of fixed random word vectors."""
    table = np.random.default_rng(7).normal(size=(len(WORDS), dim)).astype(np.float32)
    index = {w: i for i, w in enumerate(WORDS)}
    out = np.stack([table[[index[w] for w in t.split()]].mean(axis=0) for t in texts])
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def random_texts(n: int, *, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS[:30] if rng.random() < 0.5 else WORDS[30:], k=rng.randint(3, 8)))
            for _ in range(n)]


def embedding_record(texts: list[str], vectors: np.ndarray | None, *, as_base64: bool = False) -> dict[str, Any]:
    data = []
    if vectors is not None:
        for i, vector in enumerate(vectors):
            value: Any = base64.b64encode(vector.astype("<f4").tobytes()).decode() if as_base64 else vector.tolist()
            data.append({"index": i, "object": "embedding", "embedding": value})
    return {"workload_id": "emb", "client_id": "c1", "timestamp": 1_760_000_000,
            "request": {"model": "teacher-embed", "input": texts[0] if len(texts) == 1 else texts},
            "response": {"data": data}}


def write_dataset(root: Path, splits: dict[str, list[dict[str, Any]]]) -> DatasetRef:
    refs = {}
    for name, records in splits.items():
        body = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode()
        path = root / f"{name}.jsonl"
        path.write_bytes(body)
        refs[name] = {"sha256": hashlib.sha256(body).hexdigest(), "count": len(records), "path": str(path)}
    dataset_id = hashlib.sha256(json.dumps(refs, sort_keys=True).encode()).hexdigest()
    return DatasetRef(dataset_id, refs, {"workload_id": "emb", "client_id": "c1", "workload_type": "embedding"})


def logs(texts: list[str], dim: int, *, with_vectors: bool = True) -> list[dict[str, Any]]:
    vectors = teacher_vectors(texts, dim)
    return [embedding_record([t], vectors[i:i + 1] if with_vectors else None, as_base64=i % 2 == 0)
            for i, t in enumerate(texts)]


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_encoder(tmp_path_factory.mktemp("models") / "tiny-bert")


def make_request(tmp: Path, base: Path, dataset: DatasetRef, *, teacher: Path | None = None,
                 distillation: DistillationSettings | None = None, **training: Any) -> TrainRequest:
    settings = {"finetune": "full", "learning_rate": 1e-3, "batch_size": 16, "max_steps": 60, "warmup_ratio": 0.1,
                "eval_every_steps": 10, "early_stopping_patience": 0, "checkpoint_every_steps": 10,
                "max_seq_length": 16, **training}
    return TrainRequest(
        candidate="tiny-embed", kind=StudentKind.EMBEDDING_DISTILL, base_model="tiny-bert", base_model_path=base,
        dataset=dataset, training=TrainingSettings(**settings), lora=LoraSettings(rank=4, alpha=8, dropout=0.0),
        output_dir=tmp / "students" / "run", work_dir=tmp / "work" / "tiny-embed" / "run", teacher_model_path=teacher,
        distillation=distillation or DistillationSettings(matryoshka_dims=[8, 16]),
    )


def standard_dataset(tmp: Path, dim: int) -> tuple[DatasetRef, list[str]]:
    train, val = random_texts(320, seed=1), random_texts(64, seed=2)
    return write_dataset(tmp, {"train": logs(train, dim), "val": logs(val, dim)}), val


def test_distillation_learns_the_teacher_and_writes_a_loadable_student(tmp_path: Path, student_dir: Path) -> None:
    dataset, val = standard_dataset(tmp_path, dim=48)  # 32-d student -> 48-d teacher: a projection
    artifact = EmbeddingDistillTrainer().train(make_request(tmp_path, student_dir, dataset), TrainControl())

    metrics = artifact.metrics
    losses = [loss for _, loss in metrics["val_history"]]
    assert losses == sorted(losses, reverse=True) and losses[-1] < 0.85 * losses[0]
    before, after = metrics["distillation"]["before"], metrics["distillation"]["after"]
    assert after["cosine"] > before["cosine"]
    assert after["similarity_mse"] < 0.5 * before["similarity_mse"]
    for d in ("8", "16"):
        assert after["matryoshka"][d]["similarity_mse"] < before["matryoshka"][d]["similarity_mse"]
    assert metrics["projection"] and metrics["teacher_dim"] == 48 and metrics["matryoshka_dims"] == [16, 8]
    assert metrics["val_cosine_to_teacher"] == after["cosine"]
    assert artifact.hyperparameters["distillation"]["matryoshka_dims"] == [8, 16]

    out = Path(artifact.path)
    assert (out / "flywheel-artifact.json").exists() and (out / PROJECTION_DIR / "model.safetensors").exists()
    assert not (tmp_path / "work" / "tiny-embed" / "run" / "checkpoint").exists()
    embedder = Embedder(out, device="cpu")
    assert embedder.dim == 32 and embedder.pooling == "mean"
    # The saved student and projection reproduce the cosine measured in training.
    from safetensors.torch import load_file

    projection = load_file(str(out / PROJECTION_DIR / "model.safetensors"))
    raw = torch.from_numpy(embedder.encode(val, normalize=False))
    projected = torch.nn.functional.linear(raw, projection["weight"], projection["bias"])
    cosine = torch.nn.functional.cosine_similarity(projected, torch.from_numpy(teacher_vectors(val, 48))).mean()
    assert float(cosine) == pytest.approx(after["cosine"], abs=1e-3)


def test_matryoshka_truncation_renormalises(student_dir: Path) -> None:
    embedder = Embedder(student_dir, device="cpu")
    texts = random_texts(5, seed=3)
    full = embedder.encode(texts)
    for d in (8, 16, 32):
        vectors = embedder.encode(texts, dimensions=d, batch_size=2)
        assert vectors.shape == (5, d) and vectors.dtype == np.float32
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        prefix = full[:, :d] / np.linalg.norm(full[:, :d], axis=1, keepdims=True)
        assert np.allclose(vectors, prefix, atol=1e-5)
    assert embedder.encode([]).shape == (0, 32)
    with pytest.raises(ValueError, match="dimensions"):
        embedder.encode(texts, dimensions=33)


def test_lora_student_is_merged_into_a_plain_encoder(tmp_path: Path, student_dir: Path) -> None:
    dataset, _ = standard_dataset(tmp_path, dim=32)  # equal sizes: no projection
    request = make_request(tmp_path, student_dir, dataset, finetune="lora", learning_rate=5e-3, max_steps=30)
    artifact = EmbeddingDistillTrainer().train(request, TrainControl())
    metrics = artifact.metrics
    assert not metrics["projection"] and not (Path(artifact.path) / PROJECTION_DIR).exists()
    assert metrics["trainable_parameters"] < metrics["total_parameters"] / 2
    before, after = metrics["distillation"]["before"], metrics["distillation"]["after"]
    assert after["cosine"] > before["cosine"]
    assert not (Path(artifact.path) / "adapter_config.json").exists()
    assert Embedder(artifact.path).encode(["w1 w2"], dimensions=16).shape == (1, 16)


def test_cancelled_run_resumes_from_its_checkpoint(tmp_path: Path, student_dir: Path) -> None:
    dataset, _ = standard_dataset(tmp_path, dim=48)
    request = make_request(tmp_path, student_dir, dataset, max_steps=24)
    calls = 0

    def cancel_after_seven_steps() -> bool:
        nonlocal calls
        calls += 1
        return calls > 7

    with pytest.raises(TrainingCancelled):
        EmbeddingDistillTrainer().train(request, TrainControl(should_cancel=cancel_after_seven_steps))
    assert (request.work_dir / "checkpoint" / "state.json").exists()
    artifact = EmbeddingDistillTrainer().train(request, TrainControl())
    assert artifact.metrics["resumed_from_step"] == 7
    assert artifact.metrics["steps"] == 24


def test_missing_vectors_come_from_the_teacher_model_and_are_cached(tmp_path: Path, student_dir: Path) -> None:
    teacher_dir = tiny_encoder(tmp_path / "teacher", hidden=48, seed=5)
    texts = random_texts(96, seed=4)
    half = len(texts) // 2
    train = logs(texts[:half], 48) + logs(texts[half:], 48, with_vectors=False)
    val = logs(random_texts(16, seed=5), 48, with_vectors=False)
    dataset = write_dataset(tmp_path, {"train": train, "val": val})
    request = make_request(tmp_path, student_dir, dataset, teacher=teacher_dir, max_steps=5)
    artifact = EmbeddingDistillTrainer().train(request, TrainControl())
    assert artifact.metrics["teacher_vectors_computed"] == half + 16
    cache_root = request.work_dir.parent / "teacher-vectors"
    [cache] = list(cache_root.iterdir())
    again = embed_with_cache(texts[half:], teacher_path=teacher_dir, cache_dir=cache)
    assert np.allclose(again, Embedder(teacher_dir).encode(texts[half:]), atol=1e-5)

    no_teacher = make_request(tmp_path, student_dir, dataset, max_steps=5)
    with pytest.raises(TrainingFailed, match="no teacher vector"):
        EmbeddingDistillTrainer().train(no_teacher, TrainControl())


def test_records_become_texts_vectors_and_pairs() -> None:
    vectors = teacher_vectors(["w1 w2", "w3", "w4 w5"], 8)
    records = [
        embedding_record(["w1 w2"], vectors[:1], as_base64=True),
        embedding_record(["w3", "w4 w5"], vectors[1:]),  # two texts: a query/positive pair
        {"request": {"model": "m", "input": [101, 102]}, "response": {"data": [{"embedding": [0.1]}]}},
    ]
    data = read_distill_data(records)
    assert data.texts == ["w1 w2", "w3", "w4 w5"] and data.items == [(0,), (1, 2)] and data.pairs == 1
    assert data.skipped_records == 1 and data.missing() == []
    assert np.allclose(np.stack(data.vectors), vectors)  # type: ignore[arg-type]
    assert decode_embedding("") is None and decode_embedding([]) is None
    # Two texts logged as passages (input_type) are two passages, not a pair.
    declared = embedding_record(["w3", "w4 w5"], vectors[1:])
    declared["request"]["input_type"] = "passage"
    assert read_distill_data([declared]).items == [(0,), (1,)]


def test_loss_terms_and_contrastive_pairs() -> None:
    torch.manual_seed(0)
    teacher = torch.nn.functional.normalize(torch.randn(6, 12), dim=-1)
    student = torch.randn(6, 12, requires_grad=True)
    weights = DistillationSettings(matryoshka_dims=[8], contrastive_weight=1.0, temperature=0.1)
    levels = [(student, student), (student[:, :8], None)]
    pairs = torch.tensor([[0, 1], [2, 3], [4, 5]])
    terms = distill_losses(levels, teacher, weights, pairs=pairs)
    assert set(terms) == {"mse", "cosine", "similarity", "contrastive", "loss"}
    expected = terms["mse"] + terms["cosine"] + terms["similarity"] + terms["contrastive"]
    assert torch.isclose(terms["loss"], expected)
    terms["loss"].backward()
    assert student.grad is not None and torch.isfinite(student.grad).all()
    # The student equal to the teacher: every distillation term is zero.
    perfect = distill_losses([(teacher, teacher)], teacher, DistillationSettings(matryoshka_dims=[]))
    assert float(perfect["loss"]) == pytest.approx(0.0, abs=1e-6)


def test_contrastive_training_runs_on_pairs(tmp_path: Path, student_dir: Path) -> None:
    queries, positives = random_texts(80, seed=6), random_texts(80, seed=7)
    records = [embedding_record([q, p], teacher_vectors([q, p], 48)) for q, p in zip(queries, positives, strict=True)]
    dataset = write_dataset(tmp_path, {"train": records[:64], "val": records[64:]})
    weights = DistillationSettings(matryoshka_dims=[16], contrastive_weight=0.5)
    artifact = EmbeddingDistillTrainer().train(
        make_request(tmp_path, student_dir, dataset, distillation=weights, max_steps=8), TrainControl())
    assert artifact.metrics["pairs"] == 80 and artifact.metrics["train_texts"] == 128


@pytest.mark.slow
def test_real_minilm_learns_mpnet_on_finance_headlines(tmp_path: Path) -> None:
    import csv

    minilm, mpnet = default_models_dir() / "minilm-l6", default_models_dir() / "mpnet-base"
    if not (minilm / "model.safetensors").exists() or not (mpnet / "model.safetensors").exists():
        pytest.skip("run `flywheel models fetch minilm-l6 mpnet-base` first")
    torch.set_num_threads(2)
    with (REPO / "data/twitter_financial_news_topic/topic_train.csv").open(encoding="utf-8", newline="") as handle:
        texts = list(dict.fromkeys(row["text"] for row in csv.DictReader(handle)))[:360]
    vectors = embed_with_cache(texts, teacher_path=mpnet, cache_dir=REPO / "var/cache/test-mpnet-vectors")
    records = [embedding_record([t], vectors[i:i + 1]) for i, t in enumerate(texts)]
    dataset = write_dataset(tmp_path, {"train": records[:300], "val": records[300:]})
    request = make_request(tmp_path, minilm, dataset, learning_rate=5e-5, batch_size=16, max_steps=30,
                           warmup_ratio=0.1, max_seq_length=64, eval_every_steps=15,
                           distillation=DistillationSettings(matryoshka_dims=[64, 128]))
    artifact = EmbeddingDistillTrainer().train(request, TrainControl())
    before, after = artifact.metrics["distillation"]["before"], artifact.metrics["distillation"]["after"]
    assert after["cosine"] > before["cosine"]
    assert after["similarity_mse"] < before["similarity_mse"]
    assert after["matryoshka"]["128"]["similarity_mse"] < before["matryoshka"]["128"]["similarity_mse"]
    assert Embedder(artifact.path).encode(texts[:3], dimensions=128).shape == (3, 128)
