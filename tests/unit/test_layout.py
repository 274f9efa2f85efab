"""The artifact layout: one module builds, lists and deletes the paths under `artifacts.root`, and the
parts that write files (datastore, evaluator, customizer) land where it says."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from services.datastore.datasets import build_dataset, list_datasets
from services.datastore.stores.sqlite import SqliteLogStore
from services.domain.datasets import datasets_root, load_dataset, stored_datasets
from services.domain.digests import file_sha256
from services.domain.evaluation import EvalKind, EvalResult
from services.domain.layout import ArtifactLayout
from services.domain.records import LogRecord
from services.domain.settings import DataSplitSettings, Settings
from services.evaluator.runner import result_path
from tests.factories import chat_record_dict


def _reference(layout: ArtifactLayout, dataset_id: str, *blobs: str) -> None:
    """A dataset reference naming these blob files (written too)."""
    layout.datasets.blobs.mkdir(parents=True, exist_ok=True)
    splits = {}
    for i, name in enumerate(blobs):
        (layout.datasets.blobs / name).write_text("{}\n")
        splits[f"split{i}"] = {"sha256": name.removesuffix(".jsonl"), "count": 1,
                               "path": str(layout.datasets.blobs / name)}
    layout.datasets.references.mkdir(parents=True, exist_ok=True)
    layout.datasets.reference(dataset_id).write_text(json.dumps(
        {"dataset_id": dataset_id, "splits": splits, "manifest": {"workload_id": "w"}}))


def test_the_paths_under_the_root(tmp_path: Path) -> None:
    layout = ArtifactLayout(str(tmp_path))
    dataset_id = "d" * 64
    assert layout.datasets.root == datasets_root(tmp_path) == tmp_path / "datasets"
    assert layout.datasets.reference(dataset_id) == tmp_path / "datasets" / "datasets" / f"{dataset_id}.json"
    assert layout.datasets.blobs == tmp_path / "datasets" / "blobs"
    assert layout.evaluation(dataset_id, candidate="c", kind="customized", artifact_id="a" * 64) == (
        tmp_path / "evaluations" / ("d" * 16) / f"c-customized-{'a' * 12}.json")
    assert layout.evaluation(dataset_id, candidate="c", kind="base", artifact_id=None).name == "c-base.json"
    assert layout.student_dir("c", "r1") == tmp_path / "students" / "c" / "r1"
    assert layout.work_dir("c", "r1") == tmp_path / "work" / "c" / "r1"


def test_listing_an_empty_root_finds_nothing(tmp_path: Path) -> None:
    layout = ArtifactLayout(tmp_path / "never-written")
    assert layout.datasets.all_references() == [] and layout.datasets.matching("ab") == []
    assert layout.evaluation_files("d" * 64) == [] and layout.delete_evaluations("d" * 64) == []
    assert layout.datasets.collect_unused_blobs() == [] and layout.datasets.delete("d" * 64) is False


def test_deleting_a_dataset_collects_only_the_blobs_nothing_else_names(tmp_path: Path) -> None:
    layout = ArtifactLayout(tmp_path)
    _reference(layout, "a" * 64, "shared.jsonl", "only-a.jsonl")
    _reference(layout, "b" * 64, "shared.jsonl", "only-b.jsonl")
    (layout.datasets.blobs / ".partial-1-2.jsonl").write_text("a build in flight")

    assert layout.datasets.delete("a" * 64) is True and layout.datasets.delete("a" * 64) is False
    assert layout.datasets.collect_unused_blobs() == ["only-a.jsonl"]
    assert sorted(p.name for p in layout.datasets.blobs.iterdir()) == [".partial-1-2.jsonl", "only-b.jsonl",
                                                                       "shared.jsonl"]
    assert [p.name for p in layout.datasets.all_references()] == [f"{'b' * 64}.json"]
    assert [ref.dataset_id for ref in stored_datasets(layout.datasets.root)] == ["b" * 64]


def test_deleting_evaluations_keeps_those_of_a_kept_artifact(tmp_path: Path) -> None:
    layout = ArtifactLayout(tmp_path)
    dataset_id, kept, dropped = "d" * 64, "k" * 64, "x" * 64
    for candidate, kind, artifact in (("c", "base", None), ("c", "customized", kept), ("c", "customized", dropped)):
        path = layout.evaluation(dataset_id, candidate=candidate, kind=kind, artifact_id=artifact)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")

    removed = layout.delete_evaluations(dataset_id, keep_artifacts=[kept])
    assert sorted(removed) == ["c-base.json", f"c-customized-{'x' * 12}.json"]
    assert [p.name for p in layout.evaluation_files(dataset_id)] == [f"c-customized-{'k' * 12}.json"]
    assert layout.delete_evaluations(dataset_id) == [f"c-customized-{'k' * 12}.json"]
    assert not layout.evaluations(dataset_id).exists(), "nothing kept: the folder goes too"


def test_a_built_dataset_lands_where_the_layout_says(tmp_path: Path) -> None:
    settings = Settings(data_split=DataSplitSettings(eval_size=10, val_ratio=0.1, min_total_records=50, limit=None))
    layout = ArtifactLayout(tmp_path / "artifacts")
    records = []
    for i in range(60):
        record = chat_record_dict(timestamp=1_760_000_000 + i)
        record["request"]["messages"][-1]["content"] = f"headline number {i}"
        record["response"]["choices"][0]["message"]["content"] = f"[[[{['Earnings', 'Macro', 'IPO'][i % 3]}]]]"
        records.append(LogRecord.model_validate(record))
    with SqliteLogStore(tmp_path / "logs.sqlite") as store:
        store.write(records)
        ref = build_dataset(store, settings, workload_id="news_topic", client_id=None, root=layout.datasets.root)

    assert layout.datasets.all_references() == [layout.datasets.reference(ref.dataset_id)]
    assert load_dataset(layout.datasets.root, ref.dataset_id[:8]).splits == ref.splits
    assert [row["dataset_id"] for row in list_datasets(layout.datasets.root)] == [ref.dataset_id]
    for split in ref.splits.values():
        blob = Path(split["path"])
        assert blob.parent == layout.datasets.blobs and file_sha256(blob) == split["sha256"]
    result = EvalResult.not_applicable("c", EvalKind.BASE, ref.dataset_id, "e" * 64, "classification", "why")
    assert result_path(layout.root, result) == layout.evaluation(ref.dataset_id, candidate="c", kind="base",
                                                                 artifact_id=None)


@pytest.mark.parametrize("size", [0, 5, (1 << 22) + 3])
def test_file_sha256_is_the_sha256_of_the_bytes(tmp_path: Path, size: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
