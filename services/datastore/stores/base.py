"""The LogStore Protocol: what every log-store adapter (SQLite, OpenSearch, Elasticsearch) provides.

The shared contract suite in tests/contract/ runs against every adapter.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from services.domain.records import LogRecord


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    """One log line that failed validation, kept with where it came from and why."""

    file_sha256: str
    line: int
    source: str
    reason: str
    detail: str
    raw: bytes = field(repr=False)
    size_bytes: int
    received_at: float

    @property
    def key(self) -> tuple[str, int]:
        return (self.file_sha256, self.line)


@dataclass(frozen=True, slots=True)
class StreamCount:
    workload_id: str
    client_id: str
    records: int
    first_timestamp: float
    last_timestamp: float


@runtime_checkable
class LogStore(Protocol):
    """Teacher-call records and quarantined lines. Writes are idempotent on ids/keys."""

    def write(self, records: Iterable[LogRecord]) -> int:
        """Store records whose id is new; return how many were newly stored."""
        ...

    def export(
        self,
        *,
        workload_id: str,
        client_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> Iterator[LogRecord]:
        """Stream records newest first (ties by id, descending), in pages; never all in memory.

        `since` is inclusive and `until` exclusive (Unix seconds); `client_id=None` means all clients.
        """
        ...

    def counts(self) -> list[StreamCount]:
        """Records per (workload_id, client_id), sorted by workload then client."""
        ...

    def delete(self, *, workload_id: str | None = None, client_id: str | None = None) -> int:
        """Delete the records of a workload and/or client (at least one must be given)."""
        ...

    def quarantine(self, entries: Iterable[QuarantineEntry]) -> int:
        """Store quarantined lines whose (file_sha256, line) key is new; return how many."""
        ...

    def quarantined(self, *, reason: str | None = None, limit: int | None = None) -> Iterator[QuarantineEntry]:
        """Quarantined lines, newest first."""
        ...

    def quarantine_counts(self) -> dict[str, int]:
        """Quarantined lines per reason code."""
        ...

    def close(self) -> None: ...
