"""Build versioned datasets from stored teacher logs, and keep them content-addressed.

export -> redact -> dedup -> detect type -> parse labels -> split -> ICL -> write.
Each split is a JSONL blob named by its sha256; the dataset id is the sha256 of the split
hashes plus the manifest without `created_at`, so the same logs and config give the same id.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from services.datastore.pipeline.dedup import DedupReport
from services.datastore.pipeline.icl import (
    Embedder,
    TokenCounter,
    approx_tokens,
    select_similar,
    select_uniform,
    with_examples,
)
from services.datastore.pipeline.redact import redact_records
from services.datastore.pipeline.split import DatasetSplits, Example, split_examples
from services.datastore.pipeline.spool import RecordSpool, SpooledRecord, deduplicate_to_spool
from services.datastore.pipeline.workload import workload_type_of
from services.datastore.stores.base import LogStore
from services.domain.datasets import DatasetRef, stored_datasets
from services.domain.errors import ConfigError, InsufficientData, StoreError
from services.domain.labels import LabelParser
from services.domain.layout import DatasetFiles
from services.domain.prompts import detect_static_prompt
from services.domain.records import CallType, LogRecord, canonical_json
from services.domain.settings import Settings

MAX_LISTED_IDS = 100


def chat_training_example(data: dict[str, Any]) -> dict[str, Any]:
    """OpenAI chat fine-tuning line from a chat record's JSON: the request's messages plus the
    teacher's answer, tools intact."""
    answer = data["response"]["choices"][0]["message"]
    line: dict[str, Any] = {"messages": [*data["request"]["messages"], answer]}
    if data["request"].get("tools"):
        line["tools"] = data["request"]["tools"]
    return line


def _stratum(record: SpooledRecord, workload_type: str, label: str | None) -> str | None:
    if workload_type == "classification":
        return label
    if workload_type == "tool_calling":
        return record.tool
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
    teachers = teacher_models(store, settings, workload_id=workload_id, client_id=client_id)

    def export() -> Iterator[LogRecord]:
        nonlocal exported
        for record in store.export(workload_id=workload_id, client_id=client_id, limit=split_cfg.limit):
            kind, model = _teacher_of(record)
            if model != teachers["used"].get(kind):
                continue  # another teacher's answers: counted in the manifest, never mixed in
            exported += 1
            yield record

    if settings.datasets.redact_pii:
        stream, redaction = redact_records(export(), extra_patterns=settings.datasets.redaction_patterns)
    else:
        stream, redaction = export(), None
    parser = LabelParser(workload_cfg.label_pattern, workload_cfg.labels)
    root.mkdir(parents=True, exist_ok=True)
    # The kept records wait on disk; from here on the build holds ids, timestamps and strata.
    with RecordSpool(root) as spool:
        unique, dedup = deduplicate_to_spool(
            stream, spool, digits=settings.datasets.dedup_digits, label_of=lambda r: parser.parse(r.answer_text)
        )
        if not exported:
            raise InsufficientData(
                f"no records for workload {workload_id!r}"
                + (f" and client {client_id!r}" if client_id else "")
                + "; ingest logs first (flywheel ingest FILE)"
            )
        redaction_json = redaction.to_json() if redaction is not None else {"disabled": True}
        return _build_from_spooled(
            unique, dedup, settings, workload_id=workload_id, client_id=client_id, root=root, exported=exported,
            redaction_json=redaction_json, count_tokens=count_tokens, token_counter_name=token_counter_name,
            embed=embed, teachers=teachers,
        )


def _teacher_of(record: LogRecord) -> tuple[str, str]:
    """(kind of call, the teacher model that answered it): chat and embedding calls have their own teacher."""
    return ("embedding" if record.call_type is CallType.EMBEDDING else "chat"), str(record.request.model or "")


def teacher_models(store: LogStore, settings: Settings, *, workload_id: str, client_id: str | None) -> dict[str, Any]:
    """Which teacher's records a dataset is built from, per kind of call: the configured teacher
    (`teacher.model`; `teacher.embedding_model` for embedding calls) when the logs hold any of its records, else
    the newest teacher seen; records of other teachers are left out and counted. One dataset never mixes two
    teachers' labels (an upgraded teacher answers differently)."""
    seen: dict[str, Counter[str]] = {}
    newest: dict[str, str] = {}
    for record in store.export(workload_id=workload_id, client_id=client_id, limit=settings.data_split.limit):
        kind, model = _teacher_of(record)
        newest.setdefault(kind, model)
        seen.setdefault(kind, Counter())[model] += 1
    configured = {"chat": settings.teacher.model, "embedding": settings.teacher.embedding_model or settings.teacher.model}
    used = {kind: configured[kind] if counts[configured[kind]] else newest[kind] for kind, counts in seen.items()}
    return {"used": used, "configured": configured,
            "matches_configured": all(used[k] == configured[k] for k in used),
            "seen": {kind: dict(counts.most_common()) for kind, counts in seen.items()},
            "left_out": sum(n for kind, counts in seen.items() for m, n in counts.items() if m != used[kind])}


def _build_from_spooled(
    unique: list[SpooledRecord],
    dedup: DedupReport,
    settings: Settings,
    *,
    workload_id: str,
    client_id: str | None,
    root: Path,
    exported: int,
    redaction_json: dict[str, Any],
    count_tokens: TokenCounter | None,
    token_counter_name: str,
    embed: Embedder | None,
    teachers: dict[str, Any] | None = None,
) -> DatasetRef:
    split_cfg = settings.data_split
    workload_cfg = settings.workload(workload_id)
    if workload_cfg.type != "auto":
        workload_type: str = workload_cfg.type
    else:
        workload_type = workload_type_of([r.call_type for r in unique], (r.label for r in unique))
    # A workload trains on one call shape: embedding calls in a chat workload (or the reverse)
    # are left out and counted, never half-converted.
    is_embedding = workload_type == "embedding"
    off_shape = [r for r in unique if (r.call_type is CallType.EMBEDDING) != is_embedding]
    if off_shape:
        unique = [r for r in unique if (r.call_type is CallType.EMBEDDING) == is_embedding]
    unparsed: list[str] = []
    labelled: list[tuple[SpooledRecord, str | None]] = [(r, None) for r in unique]
    if workload_type == "classification":
        labelled = [(r, r.label) for r in unique if r.label is not None]
        unparsed = [r.id for r in unique if r.label is None]
    # Spooled records stand in for LogRecords: split and ICL read ids and timestamps, and load
    # only the records they pick.
    examples = [Example(r, _stratum(r, workload_type, label), label)  # type: ignore[arg-type]  # see above
                for r, label in labelled]
    splits = split_examples(examples, split_cfg)

    counter = count_tokens or approx_tokens
    budget = settings.icl.max_context_length - settings.icl.reserved_tokens
    files = DatasetFiles(root)
    per_record: list[list[list[dict[str, Any]]]] = []
    if is_embedding:
        # Embeddings train on (input, vector) pairs: every split keeps the full records; no ICL.
        lines = {name: (e.record.canonical_json() for e in part)
                 for name, part in (("train", splits.train), ("val", splits.val), ("eval", splits.eval))}
    else:
        per_record = _icl_examples(splits, settings, embed=embed, budget=budget, count_tokens=counter)
        lines = {
            "train": (canonical_json(chat_training_example(json.loads(e.record.canonical_json())))
                      for e in splits.train),
            "val": (canonical_json(chat_training_example(json.loads(e.record.canonical_json())))
                    for e in splits.val),
            "eval": (e.record.canonical_json() for e in splits.eval),
            "icl_eval": (canonical_json(with_examples(e.record, ex))
                         for e, ex in zip(splits.eval, per_record, strict=True)),
        }
    split_refs = {name: _write_blob(files.blobs, rows) for name, rows in lines.items()}
    static = None
    if not is_embedding:
        # Detected on the train split (what students learn from), as the gateway will see requests.
        train = DatasetRef("", split_refs, {}).read_split("train")
        static = detect_static_prompt(
            (row["messages"][:-1] for row in train), min_share=settings.datasets.static_prompt_min_share,
            count_tokens=counter, token_counter=token_counter_name)

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
        "other_call_types": {"count": len(off_shape), "record_ids": [r.id for r in off_shape[:MAX_LISTED_IDS]]},
        "icl": {
            "selection": settings.icl.example_selection,
            "examples_per_record": {"min": min(map(len, per_record), default=0),
                                    "max": max(map(len, per_record), default=0)},
            "budget_tokens": budget,
            "token_counter": token_counter_name,
        },
        "static_prompt": static.model_dump(mode="json") if static is not None else None,
        "teacher_models": teachers,
        "config_hash": config_hash(settings, workload_id),
    }
    dataset_id = hashlib.sha256(
        canonical_json({"splits": {k: v["sha256"] for k, v in split_refs.items()}, "manifest": manifest}).encode()
    ).hexdigest()
    manifest["created_at"] = time.time()
    ref = DatasetRef(dataset_id=dataset_id, splits=split_refs, manifest=manifest)
    _write_json_atomic(files.reference(dataset_id), ref.to_json())
    return ref


def _icl_examples(
    splits: DatasetSplits[Any], settings: Settings, *, embed: Embedder | None, budget: int, count_tokens: TokenCounter
) -> list[list[list[dict[str, Any]]]]:
    """ICL examples for each eval record (the same ones for all under uniform selection)."""
    icl, seed = settings.icl, settings.data_split.seed
    if icl.example_selection == "semantic_similarity":
        per_record = select_similar(
            splits.train, [e.record for e in splits.eval], embed=embed,  # type: ignore[arg-type]  # semantic_similarity always comes with an embedder (build_dataset)
            max_examples=icl.max_examples, budget_tokens=budget, count_tokens=count_tokens,
            pool_cap=icl.pool_cap, seed=seed,
        )
    else:
        shared = select_uniform(
            splits.train, max_examples=icl.max_examples, budget_tokens=budget, count_tokens=count_tokens, seed=seed
        )
        per_record = [shared for _ in splits.eval]
    fewest = min(map(len, per_record), default=icl.min_examples)
    if fewest < icl.min_examples:
        raise InsufficientData(
            f"only {fewest} ICL examples fit the budget of {budget} tokens; icl.min_examples is {icl.min_examples}"
        )
    return per_record


def config_hash(settings: Settings, workload_id: str) -> str:
    """sha256 of the data sections only: a change to training settings keeps dataset ids stable."""
    data = {
        "data_split": settings.data_split.model_dump(mode="json"),
        "datasets": settings.datasets.model_dump(mode="json"),
        "icl": settings.icl.model_dump(mode="json"),
        # promotion and schedule decide what happens to the data, not what it is
        "workload": settings.workload(workload_id).model_dump(mode="json", exclude={"promotion", "schedule"}),
    }
    return hashlib.sha256(canonical_json(data).encode()).hexdigest()


def _distribution(splits: DatasetSplits[Any]) -> dict[str, dict[str, int]]:
    return {
        name: dict(sorted(Counter(str(e.stratum) for e in part).items()))
        for name, part in (("train", splits.train), ("val", splits.val), ("eval", splits.eval))
    }


def _write_blob(blobs: Path, rows: Iterable[str]) -> dict[str, Any]:
    """Write canonical-JSON lines to a blob named by their sha256."""
    blobs.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    partial = blobs / f".partial-{os.getpid()}-{time.monotonic_ns()}.jsonl"
    count = 0
    try:
        with partial.open("w", encoding="utf-8") as handle:
            for row in rows:
                line = row + "\n"
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
    # A name per writer: two jobs building the same dataset at once must not rename each other's file.
    partial = path.with_suffix(f".partial-{os.getpid()}-{threading.get_ident()}")
    partial.write_text(json.dumps(value, indent=2, ensure_ascii=False), encoding="utf-8")
    partial.replace(path)


def list_datasets(root: Path) -> list[dict[str, Any]]:
    """Stored datasets, newest first: id, workload, client, type, counts, created_at."""
    rows = []
    for ref in stored_datasets(root):
        m = ref.manifest
        rows.append({
            "dataset_id": ref.dataset_id, "workload_id": m["workload_id"], "client_id": m["client_id"],
            "workload_type": m["workload_type"], "counts": m["counts"], "created_at": m["created_at"],
        })
    return sorted(rows, key=lambda r: r["created_at"], reverse=True)


