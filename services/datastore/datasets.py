"""Build versioned datasets from stored teacher logs, and keep them content-addressed.

export -> redact -> dedup -> detect type -> parse labels -> split -> ICL -> write.
Each split is a JSONL blob named by its sha256; the dataset id is the sha256 of the split
hashes plus the manifest without `created_at`, so the same logs and config give the same id.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.datastore.pipeline.dedup import deduplicate
from services.datastore.pipeline.icl import (
    Embedder,
    TokenCounter,
    approx_tokens,
    select_similar,
    select_uniform,
    with_examples,
)
from services.datastore.pipeline.redact import RedactionReport, Redactor
from services.datastore.pipeline.split import DatasetSplits, Example, split_examples
from services.datastore.pipeline.workload import LabelParser, detect_workload_type, parse_labels
from services.datastore.stores.base import LogStore
from services.domain.errors import ConfigError, InsufficientData, StoreError
from services.domain.records import ChatRequest, ChatResponse, LogRecord, canonical_json
from services.domain.settings import Settings

MAX_LISTED_IDS = 100


@dataclass(frozen=True)
class DatasetRef:
    dataset_id: str
    splits: dict[str, dict[str, Any]]  # name -> {"sha256", "count", "path"}
    manifest: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"dataset_id": self.dataset_id, "splits": self.splits, "manifest": self.manifest}


def chat_training_example(record: LogRecord) -> dict[str, Any] | None:
    """OpenAI chat fine-tuning line: the request's messages plus the teacher's answer, tools intact."""
    request, response = record.request, record.response
    if not isinstance(request, ChatRequest) or not isinstance(response, ChatResponse):
        return None
    data = record.model_dump(mode="json", exclude_unset=True, by_alias=True)
    answer = data["response"]["choices"][0]["message"]
    line: dict[str, Any] = {"messages": [*data["request"]["messages"], answer]}
    if data["request"].get("tools"):
        line["tools"] = data["request"]["tools"]
    return line


def _stratum(record: LogRecord, workload_type: str, label: str | None) -> str | None:
    if workload_type == "classification":
        return label
    if workload_type == "tool_calling" and isinstance(record.response, ChatResponse):
        calls = record.response.choices[0].message.tool_calls or []
        return calls[0].function.name if calls else "(no tool)"
    return None


def build_dataset(
    store: LogStore,
    settings: Settings,
    *,
    workload_id: str,
    client_id: str | None,
    root: Path,
    count_tokens: TokenCounter | None = None,
    token_counter_name: str = "approx_chars_div_4",
    embed: Embedder | None = None,
) -> DatasetRef:
    """Run the pipeline for one workload (and client) and store the result under `root`."""
    split_cfg = settings.data_split
    workload_cfg = settings.workload(workload_id)
    semantic = settings.icl.example_selection == "semantic_similarity"
    if semantic and embed is None:
        raise ConfigError(
            "icl.example_selection is 'semantic_similarity' but no embedding model was given; "
            f"run `flywheel models fetch {settings.icl.embedding_model}` or use 'uniform_distribution'"
        )
    # Streamed: export -> redact -> dedup holds only the deduplicated records, never the export.
    exported = 0

    def export() -> Iterator[LogRecord]:
        nonlocal exported
        for record in store.export(workload_id=workload_id, client_id=client_id, limit=split_cfg.limit):
            exported += 1
            yield record

    redaction = RedactionReport()
    if settings.datasets.redact_pii:
        redactor = Redactor(settings.datasets.redaction_patterns)
        stream: Iterable[LogRecord] = (redactor.record(r, redaction) for r in export())
    else:
        stream = export()
    unique, dedup = deduplicate(stream, digits=settings.datasets.dedup_digits)
    if not exported:
        raise InsufficientData(
            f"no records for workload {workload_id!r}"
            + (f" and client {client_id!r}" if client_id else "")
            + "; ingest logs first (flywheel ingest FILE)"
        )
    redaction_json = redaction.to_json() if settings.datasets.redact_pii else {"disabled": True}
    parser = LabelParser(workload_cfg.label_pattern, workload_cfg.labels)
    workload_type = detect_workload_type(unique, configured=workload_cfg.type, parser=parser)
    unparsed: list[str] = []
    if workload_type == "classification":
        labelled, label_report = parse_labels(unique, parser)
        unparsed = label_report.unparsed_ids
        examples = [Example(r, _stratum(r, workload_type, label), label) for r, label in labelled]
    else:
        examples = [Example(r, _stratum(r, workload_type, None), None) for r in unique]
    splits = split_examples(examples, split_cfg)

    counter = count_tokens or approx_tokens
    budget = settings.icl.max_context_length - settings.icl.reserved_tokens
    if semantic and workload_type != "embedding":
        per_record = select_similar(
            splits.train, [e.record for e in splits.eval], embed=embed,  # type: ignore[arg-type]
            max_examples=settings.icl.max_examples, budget_tokens=budget, count_tokens=counter,
            pool_cap=settings.icl.pool_cap, seed=split_cfg.seed,
        )
    else:
        shared = select_uniform(
            splits.train, max_examples=settings.icl.max_examples, budget_tokens=budget,
            count_tokens=counter, seed=split_cfg.seed,
        )
        per_record = [shared for _ in splits.eval]
    fewest = min((len(x) for x in per_record), default=0)
    if splits.eval and fewest < settings.icl.min_examples and workload_type != "embedding":
        raise InsufficientData(
            f"only {fewest} ICL examples fit the budget of {budget} tokens; "
            f"icl.min_examples is {settings.icl.min_examples}"
        )

    blobs = root / "blobs"
    lines: dict[str, Iterable[dict[str, Any]]] = {
        "train": (x for x in (chat_training_example(e.record) for e in splits.train) if x is not None),
        "val": (x for x in (chat_training_example(e.record) for e in splits.val) if x is not None),
        "eval": (json.loads(e.record.canonical_json()) for e in splits.eval),
        "icl_eval": (with_examples(e.record, ex) for e, ex in zip(splits.eval, per_record, strict=True)),
    }
    if workload_type == "embedding":  # embeddings train on (input, vector) pairs: keep the full records
        lines["train"] = (json.loads(e.record.canonical_json()) for e in splits.train)
        lines["val"] = (json.loads(e.record.canonical_json()) for e in splits.val)
        lines.pop("icl_eval")
    split_refs = {name: _write_blob(blobs, rows) for name, rows in lines.items()}

    manifest: dict[str, Any] = {
        "workload_id": workload_id,
        "client_id": client_id,
        "workload_type": workload_type,
        "source_query": {
            "store": settings.log_store.backend, "workload_id": workload_id, "client_id": client_id,
            "limit": split_cfg.limit, "order": "newest first",
        },
        "counts": {
            "exported": exported,
            "duplicates_removed": dedup.removed,
            "unparsed_answers": len(unparsed),
            "usable": len(examples),
            **splits.counts(),
        },
        "label_distribution": _distribution(splits) if workload_type in ("classification", "tool_calling") else None,
        "redactions": redaction_json,
        "duplicates": {**dedup.to_json(), "digits": settings.datasets.dedup_digits},
        "unparsed_answers": {"count": len(unparsed), "record_ids": unparsed[:MAX_LISTED_IDS]},
        "icl": {
            "selection": settings.icl.example_selection,
            "examples_per_record": {"min": fewest, "max": max((len(x) for x in per_record), default=0)},
            "budget_tokens": budget,
            "token_counter": token_counter_name,
        },
        "config_hash": config_hash(settings, workload_id),
    }
    dataset_id = hashlib.sha256(
        canonical_json({"splits": {k: v["sha256"] for k, v in split_refs.items()}, "manifest": manifest}).encode()
    ).hexdigest()
    manifest["created_at"] = time.time()
    ref = DatasetRef(dataset_id=dataset_id, splits=split_refs, manifest=manifest)
    _write_json_atomic(root / "datasets" / f"{dataset_id}.json", ref.to_json())
    return ref


def config_hash(settings: Settings, workload_id: str) -> str:
    """sha256 of the data sections only: a change to training settings keeps dataset ids stable."""
    data = {
        "data_split": settings.data_split.model_dump(mode="json"),
        "datasets": settings.datasets.model_dump(mode="json"),
        "icl": settings.icl.model_dump(mode="json"),
        "workload": settings.workload(workload_id).model_dump(mode="json"),
    }
    return hashlib.sha256(canonical_json(data).encode()).hexdigest()


def _distribution(splits: DatasetSplits[Any]) -> dict[str, dict[str, int]]:
    return {
        name: dict(sorted(Counter(str(e.stratum) for e in part).items()))
        for name, part in (("train", splits.train), ("val", splits.val), ("eval", splits.eval))
    }


def _write_blob(blobs: Path, rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    blobs.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    partial = blobs / f".partial-{os.getpid()}-{time.monotonic_ns()}.jsonl"
    count = 0
    try:
        with partial.open("w", encoding="utf-8") as handle:
            for row in rows:
                line = canonical_json(row) + "\n"
                handle.write(line)
                digest.update(line.encode("utf-8"))
                count += 1
        sha = digest.hexdigest()
        target = blobs / f"{sha}.jsonl"
        partial.replace(target)  # same content -> same name: rewriting is harmless
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise StoreError(f"writing a dataset split under {blobs} failed: {exc}") from exc
    return {"sha256": sha, "count": count, "path": str(target)}


def _write_json_atomic(path: Path, value: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(value, indent=2, ensure_ascii=False), encoding="utf-8")
    partial.replace(path)


def list_datasets(root: Path) -> list[dict[str, Any]]:
    """Stored datasets, newest first: id, workload, client, type, counts, created_at."""
    rows = []
    for path in (root / "datasets").glob("*.json"):
        ref = json.loads(path.read_text("utf-8"))
        m = ref["manifest"]
        rows.append({
            "dataset_id": ref["dataset_id"], "workload_id": m["workload_id"], "client_id": m["client_id"],
            "workload_type": m["workload_type"], "counts": m["counts"], "created_at": m["created_at"],
        })
    return sorted(rows, key=lambda r: r["created_at"], reverse=True)


def load_dataset(root: Path, dataset_id: str) -> DatasetRef:
    matches = sorted((root / "datasets").glob(f"{dataset_id}*.json"))
    if len(matches) != 1:
        raise InsufficientData(
            f"no dataset {dataset_id!r}" if not matches else f"{dataset_id!r} is ambiguous ({len(matches)} datasets)"
        )
    ref = json.loads(matches[0].read_text("utf-8"))
    return DatasetRef(ref["dataset_id"], ref["splits"], ref["manifest"])
