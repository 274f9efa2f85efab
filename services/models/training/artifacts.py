"""Write a finished student as a content-addressed, self-describing artifact directory.

The weights are written into `<output_dir>.partial/`, hashed, described by
`flywheel-artifact.json`, then renamed into place: a crash never leaves a half-written artifact
that looks finished.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from services.domain.artifacts import ARTIFACT_MANIFEST, StudentArtifact, load_artifact
from services.domain.digests import file_sha256
from services.models.training.base import TrainRequest

__all__ = ["code_version", "file_hashes", "finalize", "load_artifact", "publish", "staging_dir"]


@cache
def code_version() -> str:
    """The git commit of this checkout (with `+dirty` when it has changes), else the package version."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import PackageNotFoundError, version

        try:
            return "flywheel " + version("flywheel")
        except PackageNotFoundError:
            return "unknown"


def file_hashes(directory: Path) -> dict[str, str]:
    hashes = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.name != ARTIFACT_MANIFEST):
        hashes[path.relative_to(directory).as_posix()] = file_sha256(path)
    return hashes


def staging_dir(output_dir: Path) -> Path:
    """An empty directory to write the weights into before `finalize`."""
    partial = output_dir.with_name(output_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    return partial


def finalize(
    request: TrainRequest,
    staged: Path,
    *,
    metrics: dict[str, Any],
    labels: list[str] | None = None,
    answer_template: str | None = None,
) -> StudentArtifact:
    """Hash the staged files, write the manifest and move the directory to `request.output_dir`."""
    files = file_hashes(staged)
    artifact_id = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    dataset = request.dataset
    artifact = StudentArtifact(
        artifact_id=artifact_id,
        candidate=request.candidate,
        kind=request.kind,
        base_model=request.base_model,
        base_model_sha256=request.base_model_sha256,
        dataset_id=dataset.dataset_id,
        dataset_hashes={name: split["sha256"] for name, split in dataset.splits.items() if name in ("train", "val")},
        workload_id=str(dataset.manifest.get("workload_id")),
        client_id=dataset.manifest.get("client_id"),
        workload_type=dataset.workload_type,
        labels=labels,
        answer_template=answer_template,
        static_prompt=request.static_prompt.model_dump(mode="json") if request.static_prompt is not None else None,
        prompt_tag=request.prompt_tag,
        hyperparameters=request.hyperparameters(),
        metrics=metrics,
        code_version=code_version(),
        files=files,
        size_bytes=sum((staged / name).stat().st_size for name in files),
        path=str(request.output_dir),
        created_at=time.time(),
    )
    (staged / ARTIFACT_MANIFEST).write_text(artifact.model_dump_json(indent=2), encoding="utf-8")
    shutil.rmtree(request.output_dir, ignore_errors=True)
    request.output_dir.parent.mkdir(parents=True, exist_ok=True)
    staged.rename(request.output_dir)
    return artifact



def publish(request: TrainRequest, save: Callable[[Path], None], **finalize_args: Any) -> StudentArtifact:
    """Save and finalize on the main process only; every process returns the same artifact.

    Under `accelerate launch`/`torchrun` each rank runs the trainer; only rank 0 writes files,
    the others wait at a barrier and read the manifest it wrote.
    """
    from accelerate import PartialState

    state = PartialState()
    if state.is_main_process:
        staged = staging_dir(request.output_dir)
        save(staged)
        finalize(request, staged, **finalize_args)
    state.wait_for_everyone()
    return load_artifact(request.output_dir)
