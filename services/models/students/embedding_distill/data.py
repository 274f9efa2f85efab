"""Embedding-distillation data: teacher vectors from the logs, or computed once and cached on disk.

A record's `request.input` is a text or a list of texts; `response.data[i].embedding` holds floats or
base64 float32. Texts without a usable vector are embedded by the teacher model and cached by text
hash, so a re-run (or a resumed run) never recomputes them.

Each text also gets a role, `query` or `passage`, for ranking distillation (`listwise.py`): the
client's `request.input_type` as logged (`query` | `passage`, the gateway passes it through). Without
it: a list of exactly two texts is a [query, passage] pair (the contrastive convention), a single text
of at most `query_max_words` words is a query, and anything else (batches, long texts) is passages.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from services.domain.embeddings import QUERY_MAX_WORDS, input_roles
from services.domain.embeddings import decode_embedding as decode_floats
from services.models.students.embedding_distill.runtime import Embedder

log = logging.getLogger(__name__)
TEACHER_CACHE_DIR = "teacher-vectors"


def decode_embedding(value: list[float] | str) -> np.ndarray | None:
    """A logged vector as float32 (base64 is OpenAI's little-endian float32); None when empty or malformed."""
    try:
        vector = np.asarray(decode_floats(value), dtype=np.float32)
    except ValueError:
        return None
    return vector if vector.size else None


@dataclass
class DistillData:
    """Texts with their teacher vectors, and the items batches are made of (a text or a query/positive pair)."""

    texts: list[str] = field(default_factory=list)
    vectors: list[np.ndarray | None] = field(default_factory=list)  # None until the teacher embeds it
    items: list[tuple[int, ...]] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)  # "query" | "passage", aligned with texts
    skipped_records: int = 0

    @property
    def pairs(self) -> int:
        return sum(len(item) == 2 for item in self.items)

    def missing(self) -> list[int]:
        return [i for i, v in enumerate(self.vectors) if v is None]

    def with_role(self, role: str) -> list[int]:
        return [i for i, r in enumerate(self.roles) if r == role]


def read_distill_data(records: Iterable[dict[str, Any]], *, query_max_words: int = QUERY_MAX_WORDS) -> DistillData:
    """Texts, logged vectors, roles and items from embedding log records (token-id inputs are skipped)."""
    data = DistillData()
    for record in records:
        raw_input = record.get("request", {}).get("input")
        texts = [raw_input] if isinstance(raw_input, str) else raw_input if isinstance(raw_input, list) else []
        if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
            data.skipped_records += 1
            continue
        rows = sorted((record.get("response") or {}).get("data") or [], key=lambda d: d.get("index", 0))
        vectors = [decode_embedding(d.get("embedding", [])) for d in rows]
        if len(vectors) != len(texts):
            vectors = [None] * len(texts)  # cannot tell which vector is whose: let the teacher embed them
        first = len(data.texts)
        data.texts.extend(texts)
        data.vectors.extend(vectors)
        roles = input_roles(record.get("request", {}), texts, query_max_words=query_max_words)
        data.roles.extend(roles)
        if roles == ["query", "passage"]:  # a pair; two texts logged as passages (input_type) are two singles
            data.items.append((first, first + 1))
        else:
            data.items.extend((first + i,) for i in range(len(texts)))
    return data


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class VectorCache:
    """Teacher vectors on disk keyed by sha256 of the text: `keys.txt` + `vectors.npy`, replaced atomically."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._vectors: dict[str, np.ndarray] = {}
        keys, matrix = directory / "keys.txt", directory / "vectors.npy"
        if keys.exists() and matrix.exists():
            names = keys.read_text("utf-8").split()
            values = np.load(matrix)
            if len(names) == len(values):
                self._vectors = dict(zip(names, values, strict=True))
            else:
                log.warning("ignoring inconsistent teacher-vector cache %s", directory)

    def __len__(self) -> int:
        return len(self._vectors)

    def get(self, text: str) -> np.ndarray | None:
        return self._vectors.get(text_key(text))

    def put_many(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        self._vectors.update((text_key(t), v) for t, v in zip(texts, vectors, strict=True))
        self.directory.mkdir(parents=True, exist_ok=True)
        names = list(self._vectors)
        np.save(self.directory / "vectors.npy.tmp.npy", np.stack([self._vectors[k] for k in names]))
        (self.directory / "keys.txt.tmp").write_text("\n".join(names), encoding="utf-8")
        os.replace(self.directory / "vectors.npy.tmp.npy", self.directory / "vectors.npy")
        os.replace(self.directory / "keys.txt.tmp", self.directory / "keys.txt")


def teacher_cache_dir(root: Path, teacher_path: Path) -> Path:
    """A cache folder per teacher model (its files' hashes when cached by the registry, else its path)."""
    manifest = teacher_path / "flywheel-model.json"
    files = json.loads(manifest.read_text("utf-8")).get("files") if manifest.exists() else None
    identity = json.dumps(files, sort_keys=True) if files else str(teacher_path.resolve())
    return root / hashlib.sha256(identity.encode()).hexdigest()[:16]


def embed_with_cache(
    texts: Sequence[str], *, teacher_path: Path, cache_dir: Path, batch_size: int = 32, chunk: int = 512
) -> np.ndarray:
    """Unit teacher vectors of `texts`; only texts not in the cache are embedded, saved every `chunk` texts."""
    cache = VectorCache(cache_dir)
    todo = list(dict.fromkeys(t for t in texts if cache.get(t) is None))
    if todo:
        log.info("embedding %d texts with the teacher %s (%d cached)", len(todo), teacher_path, len(cache))
        teacher = Embedder(teacher_path)
        for start in range(0, len(todo), chunk):
            part = todo[start:start + chunk]
            cache.put_many(part, teacher.encode(part, batch_size=batch_size))
    return np.stack([cache.get(t) for t in texts]).astype(np.float32)  # type: ignore[misc]  # every text is in the cache: the missing ones were put above


