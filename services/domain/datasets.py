"""A built dataset as every part sees it: id, content-addressed splits, manifest.

The datastore writes datasets; the customizer and evaluator read them through this module only,
so they never import the datastore. Where the files live: `services.domain.layout`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.domain.digests import file_sha256
from services.domain.errors import InsufficientData, StoreError
from services.domain.layout import ArtifactLayout, DatasetFiles


@dataclass(frozen=True)
class DatasetRef:
    dataset_id: str
    splits: dict[str, dict[str, Any]]  # name -> {"sha256", "count", "path"}
    manifest: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"dataset_id": self.dataset_id, "splits": self.splits, "manifest": self.manifest}

    @property
    def workload_type(self) -> str:
        return str(self.manifest["workload_type"])

    def labels(self) -> list[str]:
        """Every label seen in any split, sorted (classification datasets)."""
        distribution = self.manifest.get("label_distribution") or {}
        return sorted({label for part in distribution.values() for label in part})

    def read_split(self, name: str, *, verify: bool = False) -> Iterator[dict[str, Any]]:
        """Yield a split's JSON lines; `verify` checks the blob's sha256 first (detects tampering)."""
        if name not in self.splits:
            raise InsufficientData(f"dataset {self.dataset_id[:12]} has no {name!r} split (has {sorted(self.splits)})")
        path = Path(self.splits[name]["path"])
        if verify and file_sha256(path) != self.splits[name]["sha256"]:
            raise StoreError(f"split {name} of dataset {self.dataset_id[:12]} at {path} does not match its sha256")
        try:
            with path.open(encoding="utf-8") as handle:
                for line in handle:
                    if line.strip():
                        yield json.loads(line)
        except FileNotFoundError:
            raise StoreError(f"split {name} of dataset {self.dataset_id[:12]} is missing: {path}") from None


def datasets_root(artifacts_root: str | Path) -> Path:
    """Where datasets live under the configured `artifacts.root`."""
    return ArtifactLayout(artifacts_root).datasets.root


def read_dataset(path: Path) -> DatasetRef:
    """A dataset from its reference file."""
    ref = DatasetFiles.read(path)
    return DatasetRef(ref["dataset_id"], ref["splits"], ref["manifest"])


def stored_datasets(root: Path) -> list[DatasetRef]:
    """Every dataset under the datasets root `root`."""
    return [read_dataset(path) for path in DatasetFiles(root).all_references()]


def load_dataset(root: Path, dataset_id: str) -> DatasetRef:
    """The dataset under `root` whose id is or starts with `dataset_id`."""
    matches = DatasetFiles(root).matching(dataset_id)
    if len(matches) != 1:
        raise InsufficientData(
            f"no dataset {dataset_id!r} under {root}; list them with `flywheel datasets list`"
            if not matches
            else f"{dataset_id!r} is ambiguous ({len(matches)} datasets); give more of the id"
        )
    return read_dataset(matches[0])


def teacher_usage(dataset: DatasetRef) -> dict[str, Any] | None:
    """Mean prompt/completion tokens of the teacher's eval answers: from the logged usage when the logs
    carry it, else estimated from the text at ~4 characters per token (`estimated: true`)."""
    rows = list(dataset.read_split("eval"))
    usages = [u for r in rows if isinstance(u := r.get("response", {}).get("usage"), dict)
              and isinstance(u.get("prompt_tokens"), int)]
    if usages:
        return {"prompt_tokens": sum(u["prompt_tokens"] for u in usages) / len(usages),
                "completion_tokens": sum(u.get("completion_tokens", 0) for u in usages) / len(usages),
                "estimated": False}
    chats = [r for r in rows if isinstance(r.get("request", {}).get("messages"), list) and r.get("response", {}).get("choices")]
    if not chats:
        return None
    # Every input token the teacher is billed for: the messages and the tool definitions sent with them; every
    # output token: the answer's text and its tool calls.
    prompt = [(sum(len(json.dumps(m.get("content"), ensure_ascii=False)) for m in r["request"]["messages"])
               + len(json.dumps(r["request"]["tools"], ensure_ascii=False) if r["request"].get("tools") else "")) / 4
              for r in chats]
    completion = [sum(len(json.dumps(m.get(k), ensure_ascii=False)) for k in ("content", "tool_calls") if m.get(k)) / 4
                  for m in (r["response"]["choices"][0].get("message") or {} for r in chats)]
    return {"prompt_tokens": round(sum(prompt) / len(prompt), 1),
            "completion_tokens": round(sum(completion) / len(completion), 1), "estimated": True}
