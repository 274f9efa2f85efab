"""Shared bench plumbing: child-process runs (clean peak RSS), tables, results, real-data datasets."""

from __future__ import annotations

import json
import multiprocessing as mp
import platform
import random
import resource
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def run_in_child(target: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run `target(*args)` in a fresh spawned process; add its peak RSS to the returned dict."""
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(target, args, queue))
    proc.start()
    import queue as queues

    while True:  # a child killed by the OOM killer never reports: say so instead of waiting forever
        try:
            result = queue.get(timeout=5)
            break
        except queues.Empty:
            if not proc.is_alive():
                raise RuntimeError(f"the benchmark child process died (exit code {proc.exitcode}; "
                                   "-9 is usually the out-of-memory killer)") from None
    proc.join()
    if "error" in result:
        raise RuntimeError(result["error"])
    return result


def _child(target: Callable[..., dict[str, Any]], args: tuple[Any, ...], queue: mp.Queue) -> None:
    try:
        out = target(*args)
        out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        queue.put(out)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises
        import traceback

        queue.put({"error": f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"})


def machine() -> dict[str, Any]:
    import os

    import torch

    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "torch": torch.__version__, "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def print_table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> None:
    columns = columns or list(rows[0])
    widths = {c: max(len(c), *(len(_cell(r.get(c))) for r in rows)) for c in columns}
    print(" | ".join(c.ljust(widths[c]) for c in columns))
    print("-|-".join("-" * widths[c] for c in columns))
    for row in rows:
        print(" | ".join(_cell(row.get(c)).ljust(widths[c]) for c in columns))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(v, float) for v in value):
        return f"[{value[0]:.3f}, {value[1]:.3f}]"
    return "-" if value is None else str(value)


def write_results(name: str, payload: dict[str, Any], path: Path | None = None) -> Path:
    target = path or RESULTS / f"{name}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(payload, indent=2, default=str))
    print(f"wrote {target}")
    return target


def teacher_logs(source: str, *, limit: int | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """Real finance text as teacher logs (the label as the teacher's answer): twitter_topic or phrasebank."""
    from services.datastore import convert

    if source == "standin":  # the realistic stand-in: long prompt, simulated teacher wrong on 15% (confusable)
        from services.datastore.standin import simulated_teacher_logs

        logs, _, _ = simulated_teacher_logs(REPO / "data" / "twitter_financial_news_topic", records=limit or 2000,
                                            seed=seed, workload_id=source, client_id="bench")
        return logs
    if source == "twitter_topic":
        folder = REPO / "data" / "twitter_financial_news_topic"
        labels, examples = convert.read_twitter_topic(folder, "train")
        system = convert.classification_system_prompt("Classify the topic of this finance news headline.", labels)
    elif source == "phrasebank":
        folder = SHARED_DATA / "financial_phrasebank"
        if not folder.exists():
            raise FileNotFoundError(f"Financial PhraseBank is not at {folder} (non-commercial licence: not in the repo)")
        labels, examples = convert.read_phrasebank(folder)
        system = convert.classification_system_prompt("Classify the sentiment of this sentence from a financial report.", labels)
    else:
        raise ValueError(source)
    items = list(examples)
    random.Random(seed).shuffle(items)
    items = items[:limit] if limit else items
    return [convert.to_log_record(e, system_prompt=system, workload_id=source, client_id="bench", timestamp=1_700_000_000 + i)
            for i, e in enumerate(items)]


def settings_base(root: Path, *, eval_size: int) -> dict[str, Any]:
    """config.yaml as a dict, with a fresh store and artifacts under `root` and a fixed eval split (no export limit)."""
    from services.domain.settings import load_settings

    base = load_settings(REPO / "config.yaml").model_dump(mode="python")
    base["artifacts"] = {"root": root / "artifacts"}
    base["log_store"]["sqlite_path"] = root / "logs.sqlite"
    base["data_split"].update({"eval_size": eval_size, "limit": None})
    return base


def build_real_dataset(root: Path, source: str, *, limit: int | None, eval_size: int, settings_update: dict[str, Any] | None = None,
                       logs: list[dict[str, Any]] | None = None) -> tuple[Any, Any]:
    """(settings, DatasetRef) for real teacher logs (`source`'s, or `logs` given, of workload `source`) in a fresh
    store under `root`, models from the per-user cache."""
    from services.datastore.datasets import build_dataset
    from services.datastore.stores.sqlite import SqliteLogStore
    from services.domain.datasets import DatasetRef
    from services.domain.records import LogRecord

    base = settings_base(root, eval_size=eval_size)
    for key, value in (settings_update or {}).items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    from services.domain.settings import Settings

    settings = Settings.model_validate(base)
    logs = teacher_logs(source, limit=limit) if logs is None else logs
    with SqliteLogStore(root / "logs.sqlite") as store:
        store.write([LogRecord.model_validate(r) for r in logs])
        ref = build_dataset(store, settings, workload_id=source, client_id=None, root=root / "artifacts" / "datasets")
    return settings, DatasetRef(ref.dataset_id, ref.splits, ref.manifest)


def train_subset(root: Path, dataset: Any, size: int, *, seed: int = 0) -> Any:
    """A dataset like `dataset` whose train split is a seeded random `size`-line sample; eval and val unchanged."""
    import hashlib

    from services.domain.datasets import DatasetRef
    from services.domain.layout import ArtifactLayout

    files = ArtifactLayout(root / "artifacts").datasets
    lines = [json.dumps(line, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
             for line in dataset.read_split("train")]
    if size < len(lines):
        lines = random.Random(seed).sample(lines, size)
    body = "".join(line + "\n" for line in lines)
    sha = hashlib.sha256(body.encode()).hexdigest()
    blob = files.blobs / f"{sha}.jsonl"
    blob.write_text(body, encoding="utf-8")
    splits = {**dataset.splits, "train": {"sha256": sha, "count": len(lines), "path": str(blob)}}
    manifest = {**dataset.manifest, "derived_from": dataset.dataset_id, "train_subset": len(lines)}
    dataset_id = hashlib.sha256(json.dumps({"splits": {k: v["sha256"] for k, v in splits.items()}, "of": dataset.dataset_id},
                                           sort_keys=True).encode()).hexdigest()
    ref = DatasetRef(dataset_id, splits, manifest)
    files.reference(dataset_id).write_text(json.dumps(ref.to_json()))
    return ref
