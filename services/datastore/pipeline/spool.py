"""Deduplicated records parked on disk, so a dataset build holds keys and ids, not records.

Dedup needs only the keys, the split only ids, timestamps and strata, workload detection only
call types and parsed labels; the full record is needed again only to write it out (and for
the few ICL examples). Holding 100k validated records cost ~690 MB; a `SpooledRecord` costs a
few hundred bytes and its body waits in an unnamed temporary file (gone when closed, or when
the process dies).
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.datastore.pipeline.dedup import DedupReport, DigitPolicy, newest_per_key
from services.domain.records import CallType, LogRecord


class RecordSpool:
    """Canonical JSON bodies appended to a temporary file, read back by offset."""

    def __init__(self, directory: Path | None = None) -> None:
        self._file = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 - closed by close()
        self._end = 0
        self._last: tuple[int, LogRecord] | None = None  # a record's fields are read in bursts

    def add(self, record: LogRecord, *, label: str | None) -> SpooledRecord:
        data = record.canonical_json().encode("utf-8")
        self._file.seek(self._end)
        self._file.write(data)
        offset, self._end = self._end, self._end + len(data)
        return SpooledRecord(
            id=record.id,
            timestamp=record.timestamp,
            call_type=record.call_type,
            label=_shared(label),
            tool=_shared(first_tool_name(record)),
            spool=self,
            offset=offset,
            length=len(data),
        )

    def text(self, offset: int, length: int) -> str:
        self._file.seek(offset)
        return self._file.read(length).decode("utf-8")

    def load(self, offset: int, length: int) -> LogRecord:
        if self._last is None or self._last[0] != offset:
            self._last = (offset, LogRecord.from_canonical_json(self.text(offset, length)))
        return self._last[1]

    def close(self) -> None:
        self._last = None
        self._file.close()

    def __enter__(self) -> RecordSpool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class SpooledRecord:
    """Stands in for a LogRecord in the split and ICL stages.

    `id`, `timestamp`, `call_type`, the parsed answer `label` and the first `tool` name are held;
    `canonical_json()` reads the body; any other attribute (request, response, model_dump, ...)
    loads the record from the spool.
    """

    id: str
    timestamp: int | float
    call_type: CallType
    label: str | None  # the answer's label under the build's parser; None: it does not parse
    tool: str | None  # first tool called, "(no tool)", or None for a non-chat record
    spool: RecordSpool
    offset: int
    length: int

    def canonical_json(self) -> str:
        return self.spool.text(self.offset, self.length)

    def load(self) -> LogRecord:
        return self.spool.load(self.offset, self.length)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.load(), name)


def first_tool_name(record: LogRecord) -> str | None:
    """The stratum of a tool-calling record: its first tool call's name, or "(no tool)"."""
    if record.answer is None:
        return None
    calls = record.answer.tool_calls or []
    return calls[0].function.name if calls else "(no tool)"


def deduplicate_to_spool(
    records: Iterable[LogRecord],
    spool: RecordSpool,
    *,
    digits: DigitPolicy = "keep",
    label_of: Callable[[LogRecord], str | None],
) -> tuple[list[SpooledRecord], DedupReport]:
    """`dedup.deduplicate` with the kept records parked in `spool`: the same records, in the
    same order (newest first; ties: the larger id), as handles."""
    # A replaced body stays in the spool, unread.
    return newest_per_key(records, digits=digits, keep=lambda record: spool.add(record, label=label_of(record)))


def _shared(text: str | None) -> str | None:
    # Labels and tool names repeat across records: one string object each.
    return None if text is None else sys.intern(text)
