"""Where artifacts live under `artifacts.root`: the one owner of the on-disk layout.

    <root>/datasets/datasets/<dataset_id>.json     a dataset's reference: its splits and manifest
    <root>/datasets/blobs/<sha256>.jsonl           split files, content-addressed, shared between datasets
    <root>/evaluations/<dataset_id[:16]>/<candidate>-<kind>[-<artifact_id[:12]>].json
    <root>/students/<candidate>/<run>/             a trained student (its manifest: services.domain.artifacts)
    <root>/work/<candidate>/<run>/                 a training's checkpoints

Every part builds, lists and deletes these paths through this module. The dataset functions take the
datasets root (`<root>/datasets`); `DatasetFiles` is the layout under it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PARTIAL = ".partial"  # a file being written (a build in flight): never collected


@dataclass(frozen=True)
class DatasetFiles:
    """The datasets root: dataset references and the split blobs they name."""

    root: Path

    @property
    def references(self) -> Path:
        return self.root / "datasets"

    @property
    def blobs(self) -> Path:
        return self.root / "blobs"

    def reference(self, dataset_id: str) -> Path:
        return self.references / f"{dataset_id}.json"

    def all_references(self) -> list[Path]:
        """Every stored dataset's reference file, sorted by name."""
        return sorted(self.references.glob("*.json")) if self.references.is_dir() else []

    def matching(self, prefix: str) -> list[Path]:
        """Reference files whose dataset id starts with `prefix`."""
        return sorted(self.references.glob(f"{prefix}*.json")) if self.references.is_dir() else []

    @staticmethod
    def read(path: Path) -> dict[str, Any]:
        """A reference file's JSON: {"dataset_id", "splits", "manifest"}."""
        value: dict[str, Any] = json.loads(path.read_text("utf-8"))
        return value

    def delete(self, dataset_id: str) -> bool:
        """Remove a dataset's reference (its blobs stay until `collect_unused_blobs`); False if it was gone."""
        path = self.reference(dataset_id)
        if not path.exists():
            return False
        path.unlink(missing_ok=True)
        return True

    def collect_unused_blobs(self) -> list[str]:
        """Remove split files no remaining reference names (blobs are shared between datasets)."""
        used = {Path(split["path"]).name for path in self.all_references()
                for split in self.read(path).get("splits", {}).values()}
        removed = []
        for blob in sorted(self.blobs.glob("*")) if self.blobs.is_dir() else []:
            if blob.name not in used and not blob.name.startswith(PARTIAL):
                blob.unlink(missing_ok=True)
                removed.append(blob.name)
        return removed


class ArtifactLayout:
    """Paths under one `artifacts.root`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.datasets = DatasetFiles(self.root / "datasets")

    @property
    def students(self) -> Path:
        return self.root / "students"

    def student_dir(self, candidate: str, run: str) -> Path:
        return self.students / candidate / run

    def work_dir(self, candidate: str, run: str) -> Path:
        return self.root / "work" / candidate / run

    def evaluations(self, dataset_id: str) -> Path:
        """The folder of a dataset's saved evaluations."""
        return self.root / "evaluations" / dataset_id[:16]

    def evaluation(self, dataset_id: str, *, candidate: str, kind: str, artifact_id: str | None) -> Path:
        """Where an evaluation is saved; customized ones name their artifact (several may share a dataset)."""
        suffix = f"-{artifact_id[:12]}" if artifact_id else ""
        return self.evaluations(dataset_id) / f"{candidate}-{kind}{suffix}.json"

    def evaluation_files(self, dataset_id: str) -> list[Path]:
        folder = self.evaluations(dataset_id)
        return sorted(folder.glob("*.json")) if folder.is_dir() else []

    def delete_evaluations(self, dataset_id: str, *, keep_artifacts: Iterable[str] = ()) -> list[str]:
        """Remove a dataset's saved evaluations but those of `keep_artifacts`; the names removed.
        With nothing kept the folder goes too."""
        kept = tuple(artifact_id[:12] for artifact_id in keep_artifacts)
        removed = []
        for path in self.evaluation_files(dataset_id):
            if not kept or not path.stem.endswith(kept):
                path.unlink(missing_ok=True)
                removed.append(path.name)
        if not kept:
            shutil.rmtree(self.evaluations(dataset_id), ignore_errors=True)
        return removed
