"""Loss-free ingestion of JSONL / JSONL.gz teacher logs into a LogStore.

Every non-blank line ends in exactly one bucket: stored, duplicate (id already stored or seen
earlier in the run) or quarantined (with a reason code). Memory stays bounded by the batch
size and `ingest.max_record_bytes`, whatever the file size or line length.
"""

from __future__ import annotations

import contextlib
import gc
import gzip
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from services.datastore.stores.base import LogStore, QuarantineEntry
from services.datastore.validation import Rejected, parse_line
from services.domain.digests import file_sha256
from services.domain.errors import StoreError
from services.domain.records import LogRecord, QuarantineReason

KEEP_OF_LONG_LINE = 4096  # bytes of an over-long line kept in the quarantine
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class IngestSummary:
    """What happened to every line. Invariant: read == stored + quarantined + duplicates."""

    read: int = 0
    stored: int = 0
    quarantined: int = 0
    duplicates: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    files: list[dict[str, object]] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)

    def add(self, other: IngestSummary) -> None:
        self.read += other.read
        self.stored += other.stored
        self.quarantined += other.quarantined
        self.duplicates += other.duplicates
        self.reasons.update(other.reasons)

    def to_json(self) -> dict[str, object]:
        return {
            "read": self.read,
            "stored": self.stored,
            "quarantined": self.quarantined,
            "duplicates": self.duplicates,
            "reasons": dict(sorted(self.reasons.items())),
            "files": self.files,
            "errors": self.errors,
        }


@dataclass(frozen=True, slots=True)
class RawLine:
    number: int  # 1-based physical line number, blank lines included
    data: bytes  # without the line ending; only the head when too_large
    size: int  # full size in bytes, line ending excluded
    too_large: bool


def read_lines(stream: BinaryIO, *, max_bytes: int) -> Iterator[RawLine]:
    """Yield lines of a binary stream, never holding more than max_bytes + 1 of one line."""
    number = 0
    while True:
        chunk = stream.readline(max_bytes + 1)
        if not chunk:
            return
        number += 1
        if chunk.endswith(b"\n") or len(chunk) <= max_bytes:
            data = chunk.rstrip(b"\r\n")
            yield RawLine(number, data, len(data), too_large=len(data) > max_bytes)
            continue
        head, size = chunk[:KEEP_OF_LONG_LINE], len(chunk)
        while not chunk.endswith(b"\n"):
            chunk = stream.readline(1 << 20)
            if not chunk:
                break
            size += len(chunk)
        yield RawLine(number, head, size - (1 if chunk.endswith(b"\n") else 0), too_large=True)


class _Sink:
    """Buffers valid records and rejected lines, writing them in batches."""

    def __init__(self, store: LogStore, summary: IngestSummary, batch_size: int) -> None:
        self.store, self.summary, self.batch_size = store, summary, batch_size
        self.pending: list[LogRecord] = []
        self.rejected: list[QuarantineEntry] = []

    def add_record(self, record: LogRecord) -> None:
        self.pending.append(record)
        if len(self.pending) >= self.batch_size:
            self.flush()

    def add_rejected(self, entry: QuarantineEntry) -> None:
        self.summary.quarantined += 1
        self.summary.reasons[entry.reason] += 1
        self.rejected.append(entry)
        if len(self.rejected) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            stored = self.store.write(self.pending)
            self.summary.stored += stored
            self.summary.duplicates += len(self.pending) - stored
            self.pending.clear()
        if self.rejected:
            self.store.quarantine(self.rejected)
            self.rejected.clear()


def ingest_lines(
    lines: Iterable[RawLine],
    *,
    store: LogStore,
    source: str,
    file_sha256: str,
    max_record_bytes: int,
    batch_size: int = 1000,
    summary: IngestSummary | None = None,
) -> IngestSummary:
    """Validate and store lines; quarantine the bad ones.

    Duplicates are found by the store itself (writes are idempotent on record id), so a record
    repeated within a run, a file or even one batch is stored once, and no per-run set of ids
    grows with the input.

    If reading fails midway, the lines read so far are still written and counted in `summary`.
    """
    summary = summary if summary is not None else IngestSummary()
    sink = _Sink(store, summary, batch_size)
    now = time.time()
    try:
        for line in lines:
            if not line.too_large and not line.data.strip(b" \t\r\n\f\v"):
                continue  # blank lines are not records and are not counted
            summary.read += 1
            outcome = _judge(line, max_record_bytes)
            if isinstance(outcome, Rejected):
                sink.add_rejected(
                    QuarantineEntry(
                        file_sha256=file_sha256,
                        line=line.number,
                        source=source,
                        reason=outcome.reason.value,
                        detail=outcome.detail,
                        raw=line.data,
                        size_bytes=line.size,
                        received_at=now,
                    )
                )
            else:
                sink.add_record(outcome)
    except StoreError:
        raise
    except BaseException:
        sink.flush()
        raise
    sink.flush()
    return summary


def _judge(line: RawLine, max_record_bytes: int) -> LogRecord | Rejected:
    if line.too_large:
        return Rejected(
            QuarantineReason.RECORD_TOO_LARGE,
            f"line of {line.size} bytes exceeds ingest.max_record_bytes ({max_record_bytes});"
            f" the first {min(line.size, KEEP_OF_LONG_LINE)} bytes are kept",
        )
    return parse_line(line.data)


def ingest_files(
    paths: Iterable[Path],
    *,
    store: LogStore,
    max_record_bytes: int,
    batch_size: int = 1000,
    on_progress: Callable[[Path, int, int], None] | None = None,
    pause_gc: bool = False,
) -> IngestSummary:
    """Ingest files in order. A file that cannot be read is reported in `errors`; the rest go on.

    StoreError propagates: when the store fails, nothing more can be stored honestly.
    `pause_gc` turns the cyclic garbage collector off for the run (records hold no cycles, so
    memory stays bounded by reference counting): about 15% faster. Only for a process that does
    nothing else meanwhile, like the CLI; a server must not pause it for its other threads.
    """
    with _gc_paused() if pause_gc else contextlib.nullcontext():
        return _ingest_files(paths, store, max_record_bytes, batch_size, on_progress)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _ingest_files(
    paths: Iterable[Path],
    store: LogStore,
    max_record_bytes: int,
    batch_size: int,
    on_progress: Callable[[Path, int, int], None] | None,
) -> IngestSummary:
    total = IngestSummary()
    for path in paths:
        part = IngestSummary()
        sha = ""
        try:
            sha = file_sha256(path)
            size = path.stat().st_size
            with path.open("rb") as raw:
                compressed = raw.read(2) == _GZIP_MAGIC
                raw.seek(0)
                stream: BinaryIO = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw  # type: ignore[assignment]  # typeshed: GzipFile is not a BinaryIO, though it reads as one

                def lines(
                    stream: BinaryIO = stream, raw: BinaryIO = raw, path: Path = path, size: int = size
                ) -> Iterator[RawLine]:
                    for line in read_lines(stream, max_bytes=max_record_bytes):
                        if on_progress is not None and line.number % 1000 == 0:
                            on_progress(path, raw.tell(), size)
                        yield line

                ingest_lines(
                    lines(),
                    summary=part,
                    store=store,
                    source=str(path),
                    file_sha256=sha,
                    max_record_bytes=max_record_bytes,
                    batch_size=batch_size,
                )
            if on_progress is not None:
                on_progress(path, size, size)
        except StoreError:
            raise
        except (OSError, EOFError, zlib.error) as exc:
            # Lines read before the failure are stored and counted; the file is reported as
            # unreadable so the exit status says so.
            total.errors.append({"file": str(path), "error": f"{type(exc).__name__}: {exc}"})
        total.add(part)
        total.files.append(
            {
                "file": str(path),
                "sha256": sha,
                "read": part.read,
                "stored": part.stored,
                "quarantined": part.quarantined,
                "duplicates": part.duplicates,
            }
        )
    return total
