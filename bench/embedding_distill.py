"""Benchmark 3: distil the mpnet teacher (768-d) into MiniLM-L6 (384-d) on finance text.

    python -m bench.embedding_distill [--train N] [--steps S] [--eval N] [--threads T] [--json PATH]

1. Teacher vectors: all-mpnet-base-v2 embeds the texts once (cached under var/cache/, so reruns
   skip it). Train texts: Twitter Financial News Topic *train* headlines, logged as embedding
   teacher records (half the vectors as floats, half base64) -> a train/val dataset.
2. The customizer's EmbeddingDistillTrainer trains MiniLM (full fine-tune, default distillation
   losses, Matryoshka sizes 64/128/256).
3. Held out: Twitter *valid* headlines plus FinanceBench evidence snippets (../shared/data, when
   present; 64-word windows of the evidence pages). For the untrained MiniLM (baseline) and the
   distilled one: recall@10 of each text's 10 nearest neighbours against the teacher's (the
   evaluator's `embedding_report`, with a bootstrap CI), at 384 and truncated to 256/128/64 dims.
4. Encode speed (texts/s, batch 64, after a warm-up, best of 3 interleaved rounds) of teacher and
   student on the same 160 held-out texts (128 headlines, 32 snippets).
Prints a table and writes bench/results/embedding_distill.json. Goal: >= 95% agreement at
>= 5x speed, >= 90% at 128 dims.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from services.domain.settings import default_models_dir

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
TWITTER = REPO / "data/twitter_financial_news_topic"
FINANCEBENCH = REPO.parent / "shared/data/financebench/financebench_open_source.jsonl"
MODELS = default_models_dir()
WORK = REPO / "var/bench/embedding_distill"
TEACHER_CACHE = REPO / "var/cache/bench-mpnet-vectors"
DIMS = (256, 128, 64)


def twitter_texts(split: str) -> list[str]:
    with (TWITTER / f"topic_{split}.csv").open(encoding="utf-8", newline="") as handle:
        return list(dict.fromkeys(row["text"].strip() for row in csv.DictReader(handle) if row["text"].strip()))


def financebench_snippets(limit: int, *, words: int = 64) -> list[str]:
    """Evidence pages cut into windows of `words` words (whitespace collapsed); short tails dropped."""
    if not FINANCEBENCH.exists():
        return []
    snippets: list[str] = []
    with FINANCEBENCH.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            for evidence in json.loads(line).get("evidence") or []:
                tokens = evidence.get("evidence_text", "").split()
                snippets += [" ".join(tokens[i:i + words]) for i in range(0, len(tokens), words)
                             if len(tokens[i:i + words]) >= 12]
    return list(dict.fromkeys(snippets))[:limit]


def write_split(path: Path, texts: list[str], vectors: np.ndarray) -> dict[str, Any]:
    """Embedding teacher logs, one text per record (even rows' vectors base64, as OpenAI can send them)."""
    import base64

    lines = []
    for i, (text, vector) in enumerate(zip(texts, vectors, strict=True)):
        value: Any = base64.b64encode(vector.astype("<f4").tobytes()).decode() if i % 2 == 0 else vector.tolist()
        lines.append(json.dumps({
            "workload_id": "finance_embeddings", "client_id": "bench", "timestamp": 1_760_000_000 + i,
            "request": {"model": "sentence-transformers/all-mpnet-base-v2", "input": text},
            "response": {"data": [{"index": 0, "object": "embedding", "embedding": value}]},
        }, sort_keys=True))
    body = ("\n".join(lines) + "\n").encode()
    path.write_bytes(body)
    return {"sha256": hashlib.sha256(body).hexdigest(), "count": len(lines), "path": str(path)}


def encode_speeds(embedders: dict[str, Any], texts: list[str], *, rounds: int = 3) -> dict[str, float]:
    """texts/s of each embedder, best of `rounds` interleaved runs (robust to other load on a shared machine)."""
    for embedder in embedders.values():
        embedder.encode(texts[:64])  # warm-up
    best = dict.fromkeys(embedders, 0.0)
    for _ in range(rounds):
        for name, embedder in embedders.items():
            started = time.perf_counter()
            embedder.encode(texts, batch_size=64)
            best[name] = max(best[name], len(texts) / (time.perf_counter() - started))
    return best


def agreement(report: dict[str, Any]) -> dict[str, Any]:
    row = {"recall@10": report["recall@10"], "ci": report["score_ci"], "spearman": report["spearman"],
           "mrr": report["mrr"]}
    for d in DIMS:
        row[f"recall@10@{d}"] = report["matryoshka"][str(d)]["recall@10"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=int, default=1600, help="Twitter train headlines to distil on.")
    parser.add_argument("--val", type=int, default=100, help="Further train headlines for validation.")
    parser.add_argument("--eval", type=int, default=600, help="Held-out Twitter valid headlines.")
    parser.add_argument("--financebench", type=int, default=200, help="Held-out FinanceBench snippets (max).")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=2)
    defaults = {"mse": 1.0, "cosine": 1.0, "similarity": 1.0}  # DistillationSettings' defaults
    for term, value in defaults.items():
        parser.add_argument(f"--{term}-weight", type=float, default=value, help=f"distillation.{term}_weight")
    parser.add_argument("--json", type=Path, default=RESULTS / "embedding_distill.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    import torch

    torch.set_num_threads(args.threads)
    from services.domain.artifacts import StudentKind
    from services.domain.datasets import DatasetRef
    from services.domain.settings import DistillationSettings, LoraSettings, TrainingSettings
    from services.evaluator.metrics.embedding import embedding_report
    from services.models.students.embedding_distill.data import embed_with_cache
    from services.models.students.embedding_distill.runtime import Embedder
    from services.models.students.embedding_distill.trainer import EmbeddingDistillTrainer
    from services.models.training.base import TrainControl, TrainRequest

    teacher_path, student_path = MODELS / "mpnet-base", MODELS / "minilm-l6"
    for path in (teacher_path, student_path):
        if not (path / "model.safetensors").exists():
            raise SystemExit(f"{path} missing: run `flywheel models fetch minilm-l6 mpnet-base`")
    train_pool = twitter_texts("train")
    train, val = train_pool[:args.train], train_pool[args.train:args.train + args.val]
    tweets = twitter_texts("valid")[:args.eval]
    snippets = financebench_snippets(args.financebench)
    held_out = [t for t in dict.fromkeys(tweets + snippets) if t not in set(train_pool)]

    started = time.perf_counter()
    teacher_train = embed_with_cache(train + val, teacher_path=teacher_path, cache_dir=TEACHER_CACHE)
    teacher_eval = embed_with_cache(held_out, teacher_path=teacher_path, cache_dir=TEACHER_CACHE)
    teacher_s = time.perf_counter() - started

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    splits = {"train": write_split(WORK / "train.jsonl", train, teacher_train[:len(train)]),
              "val": write_split(WORK / "val.jsonl", val, teacher_train[len(train):])}
    dataset = DatasetRef(hashlib.sha256(json.dumps(splits, sort_keys=True).encode()).hexdigest(), splits,
                         {"workload_id": "finance_embeddings", "client_id": "bench", "workload_type": "embedding"})
    training = TrainingSettings(finetune="full", learning_rate=args.lr, batch_size=args.batch_size,
                                max_steps=args.steps, warmup_ratio=0.1, max_seq_length=128,
                                early_stopping_patience=0, checkpoint_every_steps=1000, seed=42)
    distillation = DistillationSettings(matryoshka_dims=list(DIMS), mse_weight=args.mse_weight,
                                        cosine_weight=args.cosine_weight, similarity_weight=args.similarity_weight)
    request = TrainRequest(
        candidate="minilm-distilled", kind=StudentKind.EMBEDDING_DISTILL, base_model="minilm-l6",
        base_model_path=student_path, dataset=dataset, training=training, lora=LoraSettings(),
        output_dir=WORK / "student", work_dir=WORK / "work", teacher_model_path=teacher_path,
        distillation=distillation)
    artifact = EmbeddingDistillTrainer().train(request, TrainControl(report_every_s=30))

    baseline, distilled = Embedder(student_path, device="cpu"), Embedder(artifact.path, device="cpu")
    reports = {}
    for name, embedder in (("minilm (untrained)", baseline), ("minilm (distilled)", distilled)):
        vectors = embedder.encode(held_out)
        reports[name] = {
            "all": agreement(embedding_report(teacher_eval, vectors, matryoshka_dims=DIMS, bootstrap_samples=500)),
            "twitter": agreement(embedding_report(teacher_eval[:len(tweets)], vectors[:len(tweets)],
                                                  matryoshka_dims=DIMS, bootstrap_samples=0)),
        }
        if snippets:
            rows = slice(len(held_out) - len(snippets), None)
            reports[name]["financebench"] = agreement(embedding_report(
                teacher_eval[rows], vectors[rows], matryoshka_dims=DIMS, bootstrap_samples=0))

    speed_texts = tweets[:128] + snippets[:32]
    teacher = Embedder(teacher_path, device="cpu")
    speed = encode_speeds({"teacher (mpnet)": teacher, "student (minilm)": distilled}, speed_texts)
    ratio = speed["student (minilm)"] / speed["teacher (mpnet)"]

    print(f"\nheld out: {len(held_out)} texts ({len(tweets)} Twitter valid, {len(snippets)} FinanceBench snippets); "
          f"trained on {len(train)} (+{len(val)} val), {artifact.metrics['steps']} steps in "
          f"{artifact.metrics['train_seconds']:.0f} s; threads={args.threads}")
    header = f"{'student':<22}{'set':<14}{'R@10 384':>10}{'R@10 256':>10}{'R@10 128':>10}{'R@10 64':>10}{'spearman':>10}"
    print(header)
    for name, parts in reports.items():
        for part, row in parts.items():
            print(f"{name:<22}{part:<14}{row['recall@10']:>10.3f}{row['recall@10@256']:>10.3f}"
                  f"{row['recall@10@128']:>10.3f}{row['recall@10@64']:>10.3f}{row['spearman']:>10.3f}")
    print(f"encode speed (texts/s): teacher {speed['teacher (mpnet)']:.1f}, student {speed['student (minilm)']:.1f} "
          f"-> {ratio:.1f}x")

    result = {
        "machine": {"cpu_count_used": args.threads, "platform": platform.platform(), "processor": platform.processor(),
                    "torch": torch.__version__},
        "settings": {**vars(args), "json": str(args.json), "training": training.model_dump(mode="json"),
                     "distillation": distillation.model_dump(mode="json")},
        "texts": {"train": len(train), "val": len(val), "held_out": len(held_out), "twitter_valid": len(tweets),
                  "financebench_snippets": len(snippets)},
        "teacher_embedding_s": round(teacher_s, 1),
        "training": {k: artifact.metrics[k] for k in ("steps", "train_seconds", "examples_per_s", "best_val_loss",
                                                      "val_history", "distillation")},
        "agreement": reports,
        "encode_texts_per_s": {k: round(v, 1) for k, v in speed.items()},
        "speedup": round(ratio, 2),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
