"""A small but real model-plane setting: tiny local models in a cache and a dataset built by the
real datastore pipeline from synthetic teacher logs (labels follow keywords, so they can be learnt)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.domain.datasets import DatasetRef
from services.domain.settings import Settings
from tests.tiny_models import tiny_model_dir

TOPICS = {
    "Markets": ["stocks rally", "markets fall", "shares slide", "index hits record"],
    "Macro": ["fed holds rates", "inflation cools", "central bank signals cuts", "jobs report beats"],
    "Earnings": ["earnings beat estimates", "profit misses forecast", "revenue jumps", "guidance raised"],
    "Dividend": ["dividend increase", "special dividend", "payout cut", "dividend suspended"],
}
SYSTEM = "Classify the headline. Answer with the label in triple brackets: Markets, Macro, Earnings, Dividend."


def classification_logs(n: int, *, seed: int = 0, workload_id: str = "news_topic") -> list[dict[str, Any]]:
    rng = random.Random(seed)
    companies = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne"]
    records = []
    for i in range(n):
        label = list(TOPICS)[i % len(TOPICS)]
        headline = f"{rng.choice(companies)} {rng.choice(TOPICS[label])} {i}"
        records.append({
            "workload_id": workload_id, "client_id": "desk-1", "timestamp": 1_760_000_000 + i,
            "request": {"model": "teacher", "messages": [{"role": "system", "content": SYSTEM},
                                                         {"role": "user", "content": headline}]},
            "response": {"choices": [{"index": 0, "message": {"role": "assistant", "content": f"[[[{label}]]]"}}]},
        })
    return records


@dataclass
class ModelPlane:
    settings: Settings
    dataset: DatasetRef
    root: Path


def model_plane(root: Path, *, records: int = 160, workload_id: str = "news_topic", logs: list[dict[str, Any]] | None = None,
                **training: Any) -> ModelPlane:
    """Settings with tiny candidates, the models cached, and a dataset built from `records` logs."""
    from services.datastore.datasets import build_dataset
    from services.datastore.stores.sqlite import SqliteLogStore
    from services.domain.records import LogRecord
    from services.models.cache import ModelCache

    models = root / "src-models"
    lm, bert = tiny_model_dir(models, "causal_lm"), tiny_model_dir(models, "encoder")
    settings = Settings.model_validate({
        "artifacts": {"root": str(root / "artifacts")},
        "log_store": {"sqlite_path": str(root / "logs.sqlite")},
        "job_store": {"url": f"sqlite:///{root / 'jobs.sqlite'}"},
        "queue": {"embedded_dir": str(root / "queue"), "polling_interval_s": 0.05},
        # MLflow costs seconds per job (schema creation); the tests that check tracking turn it on.
        "tracking": {"enabled": False, "tracking_uri": f"sqlite:///{root / 'mlflow.sqlite'}"},
        "models": {"cache_dir": str(root / "cache"), "registry": {
            "tiny-lm": {"source": "local", "kind": "causal_lm", "path": str(lm)},
            "tiny-bert": {"source": "local", "kind": "encoder", "path": str(bert)},
        }},
        "candidates": [
            {"name": "tiny-lora", "model": "tiny-lm", "kind": "causal_lm_lora"},
            {"name": "tiny-clf", "model": "tiny-bert", "kind": "encoder_classifier"},
            {"name": "tiny-emb", "model": "tiny-bert", "kind": "embedding_distill"},
        ],
        "training": {"epochs": 2, "batch_size": 8, "learning_rate": 5e-3, "max_seq_length": 96,
                     "checkpoint_every_steps": 5, "seed": 7, **training},
        "lora": {"rank": 4, "alpha": 8, "dropout": 0.0},
        "data_split": {"eval_size": 24, "val_ratio": 0.15, "min_total_records": 40, "limit": 10_000},
        "icl": {"max_examples": 2},
    })
    cache = ModelCache(settings.models)
    for name in ("tiny-lm", "tiny-bert"):
        cache.fetch(name, forward_pass=False)
    with SqliteLogStore(root / "logs.sqlite") as store:
        store.write([LogRecord.model_validate(r) for r in (logs or classification_logs(records, workload_id=workload_id))])
        dataset = build_dataset(store, settings, workload_id=workload_id, client_id=None,
                                root=root / "artifacts" / "datasets")
    return ModelPlane(settings=settings, dataset=DatasetRef(dataset.dataset_id, dataset.splits, dataset.manifest), root=root)


def embedding_logs(n: int, *, dim: int = 16, seed: int = 0, workload_id: str = "filing_search") -> list[dict[str, Any]]:
    """Embedding calls whose teacher vectors depend on the topic of the text (learnable structure)."""
    rng = random.Random(seed)
    centers = {label: [rng.gauss(0, 1) for _ in range(dim)] for label in TOPICS}
    records = []
    for i in range(n):
        label = list(TOPICS)[i % len(TOPICS)]
        text = f"{rng.choice(TOPICS[label])} {i}"
        vector = [c + rng.gauss(0, 0.3) for c in centers[label]]
        records.append({
            "workload_id": workload_id, "client_id": "desk-1", "timestamp": 1_760_000_000 + i,
            "request": {"model": "teacher-embed", "input": text},
            "response": {"data": [{"index": 0, "embedding": vector}]},
        })
    return records


def retrieval_logs(n: int, *, dim: int = 16, seed: int = 0, workload_id: str = "filing_search",
                   batch: int = 4) -> list[dict[str, Any]]:
    """Embedding calls as a search client makes them: one query per call (`input_type: query`) and passages in
    batches (`input_type: passage`); the teacher's vectors depend on the topic, plus noise (a ranking to learn)."""
    rng = random.Random(seed)
    centers = {label: [rng.gauss(0, 1) for _ in range(dim)] for label in TOPICS}

    def vector(label: str) -> list[float]:
        return [c + rng.gauss(0, 0.6) for c in centers[label]]

    records = []
    for i in range(n):
        label = list(TOPICS)[i % len(TOPICS)]
        if i % 3:
            texts, kind = [f"{rng.choice(TOPICS[label])} {i}"], "query"
        else:
            texts = [f"{rng.choice(TOPICS[label])} said the company in filing {i}-{j}" for j in range(batch)]
            kind = "passage"
        records.append({
            "workload_id": workload_id, "client_id": "desk-1", "timestamp": 1_760_000_000 + i,
            "request": {"model": "teacher-embed", "input": texts if kind == "passage" else texts[0], "input_type": kind},
            "response": {"data": [{"index": j, "embedding": vector(label)} for j in range(len(texts))]},
        })
    return records
