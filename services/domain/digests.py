"""Content digests of files: how artifacts, datasets, ingested files and cached models are identified."""

from __future__ import annotations

import hashlib
from pathlib import Path

BLOCK = 1 << 22  # 4 MiB reads: large model files hash at disk speed without holding them in memory


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()
