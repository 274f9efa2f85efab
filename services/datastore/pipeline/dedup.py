"""Deduplicate records on normalized user content, keeping the newest.

Two teacher calls that asked the same thing (up to case and whitespace, and optionally digits)
would put the same example into both train and eval; dedup removes that leak before splitting.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

from services.domain.records import ChatRequest, EmbeddingRequest, LogRecord

DigitPolicy = Literal["keep", "mask", "drop"]
_SPACE = re.compile(r"\s+")
_DIGITS = re.compile(r"\d+")


def normalize(text: str, *, digits: DigitPolicy = "keep") -> str:
    """Case-folded, whitespace-collapsed; digits kept, masked to '0' runs, or dropped."""
    text = _SPACE.sub(" ", text.casefold()).strip()
    if digits == "mask":
        text = _DIGITS.sub("0", text)
    elif digits == "drop":
        text = _SPACE.sub(" ", _DIGITS.sub("", text)).strip()
    return text


def dedup_key(record: LogRecord, *, digits: DigitPolicy = "keep") -> str:
    """Hash of what the caller asked: every user turn (or embedding input), normalized.

    The system prompt is left out on purpose: the same question under a revised prompt is
    still the same example.
    """
    request = record.request
    if isinstance(request, ChatRequest):
        parts = [m.text for m in request.messages if m.role == "user"]
    elif isinstance(request, EmbeddingRequest):
        parts = request.texts
    else:  # pragma: no cover - records are one of the two
        parts = []
    joined = "\x1e".join(normalize(p, digits=digits) for p in parts)
    return hashlib.sha256(f"{record.workload_id}\x1f{joined}".encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class DedupReport:
    kept: int
    removed: int

    def to_json(self) -> dict[str, int]:
        return {"kept": self.kept, "removed": self.removed}


def deduplicate(records: Iterable[LogRecord], *, digits: DigitPolicy = "keep") -> tuple[list[LogRecord], DedupReport]:
    """Keep the newest record per key (ties: the larger id, so the result is deterministic).

    The output is ordered newest first, like a log-store export.
    """
    return newest_per_key(records, digits=digits, keep=lambda record: record)


class _Dated(Protocol):
    @property
    def timestamp(self) -> float: ...
    @property
    def id(self) -> str: ...


KeptT = TypeVar("KeptT", bound=_Dated)


def newest_per_key(
    records: Iterable[LogRecord], *, digits: DigitPolicy, keep: Callable[[LogRecord], KeptT]
) -> tuple[list[KeptT], DedupReport]:
    """The dedup rule, whatever is kept per record: `keep(record)` runs only for a record that is
    (for now) the newest of its key, so the caller can store it elsewhere and keep a handle."""
    best: dict[str, KeptT] = {}
    total = 0
    for record in records:
        total += 1
        key = dedup_key(record, digits=digits)
        current = best.get(key)
        if current is None or (record.timestamp, record.id) > (current.timestamp, current.id):
            best[key] = keep(record)
    kept = sorted(best.values(), key=lambda r: (r.timestamp, r.id), reverse=True)
    return kept, DedupReport(kept=len(kept), removed=total - len(kept))
