"""Ingestion: every line stored, duplicate or quarantined; bounded memory; failures reported."""

from __future__ import annotations

import gzip
import io
import json
import tracemalloc
from pathlib import Path

import pytest

from services.datastore.ingest import KEEP_OF_LONG_LINE, ingest_files, read_lines
from services.datastore.stores.sqlite import SqliteLogStore
from tests.factories import chat_record_dict, embedding_record_dict, jsonl, tool_record_dict

MAX = 4096


@pytest.fixture
def store(tmp_path: Path):
    with SqliteLogStore(tmp_path / "logs.sqlite", batch_size=50) as store:
        yield store


def _ingest(store: SqliteLogStore, *paths: Path):
    summary = ingest_files(list(paths), store=store, max_record_bytes=MAX, batch_size=50)
    assert summary.read == summary.stored + summary.quarantined + summary.duplicates
    return summary


def test_mixed_file_lands_in_the_right_buckets(tmp_path: Path, store: SqliteLogStore) -> None:
    good = chat_record_dict()
    path = tmp_path / "logs.jsonl"
    path.write_bytes(
        jsonl(good, tool_record_dict(), embedding_record_dict(), "", "   ", good, "{broken", b"\xff\xfe", "[1]")
    )
    summary = _ingest(store, path)
    assert (summary.read, summary.stored, summary.duplicates, summary.quarantined) == (7, 3, 1, 3)
    assert summary.reasons == {"invalid_json": 1, "not_utf8": 1, "not_an_object": 1}
    lines = sorted(e.line for e in store.quarantined())
    assert lines == [7, 8, 9]  # physical line numbers, blank lines included


def test_reingesting_stores_nothing_and_does_not_duplicate_quarantine(tmp_path: Path, store: SqliteLogStore) -> None:
    path = tmp_path / "logs.jsonl"
    path.write_bytes(jsonl(chat_record_dict(), "{broken"))
    first, second = _ingest(store, path), _ingest(store, path)
    assert (first.stored, first.quarantined) == (1, 1)
    assert (second.stored, second.duplicates, second.quarantined) == (0, 1, 1)
    assert store.quarantine_counts() == {"invalid_json": 1}


def test_same_record_in_two_files_of_one_run_is_a_duplicate(tmp_path: Path, store: SqliteLogStore) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_bytes(jsonl(chat_record_dict()))
    b.write_bytes(jsonl(chat_record_dict(), chat_record_dict(timestamp=1)))
    summary = _ingest(store, a, b)
    assert (summary.stored, summary.duplicates) == (2, 1)
    assert [f["stored"] for f in summary.files] == [1, 1]


def test_gzip_is_detected_by_content_not_name(tmp_path: Path, store: SqliteLogStore) -> None:
    path = tmp_path / "logs.data"
    path.write_bytes(gzip.compress(jsonl(chat_record_dict(), tool_record_dict())))
    assert _ingest(store, path).stored == 2


def test_over_long_line_is_quarantined_with_its_head_kept(tmp_path: Path, store: SqliteLogStore) -> None:
    big = chat_record_dict()
    big["request"]["messages"][1]["content"] = "x" * (MAX * 3)
    path = tmp_path / "logs.jsonl"
    path.write_bytes(jsonl(big, chat_record_dict()))
    summary = _ingest(store, path)
    assert (summary.stored, summary.reasons) == (1, {"record_too_large": 1})
    (entry,) = store.quarantined()
    assert entry.line == 1
    assert entry.size_bytes == len(json.dumps(big))
    assert len(entry.raw) == KEEP_OF_LONG_LINE


@pytest.mark.parametrize("size", [MAX - 1, MAX, MAX + 1])
def test_line_length_limit_is_exact(size: int) -> None:
    stream = io.BytesIO(b"a" * size + b"\n" + b"b" * size)  # second line without a newline
    lines = list(read_lines(stream, max_bytes=MAX))
    assert [(line.number, line.size, line.too_large) for line in lines] == [
        (1, size, size > MAX),
        (2, size, size > MAX),
    ]


def test_a_huge_single_line_is_read_in_bounded_memory() -> None:
    # 64 MiB without a newline: memory must stay near max_record_bytes, not grow with the line.
    class Endless(io.RawIOBase):
        def __init__(self, total: int) -> None:
            self.left = total

        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
            n = min(len(buffer), self.left)
            buffer[:n] = b"y" * n
            self.left -= n
            return n

    tracemalloc.start()
    lines = list(read_lines(io.BufferedReader(Endless(64 << 20)), max_bytes=MAX))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert [(line.size, line.too_large) for line in lines] == [(64 << 20, True)]
    assert peak < 8 << 20, f"peak {peak} bytes"


def test_unreadable_file_is_reported_and_others_still_ingested(tmp_path: Path, store: SqliteLogStore) -> None:
    good = tmp_path / "good.jsonl"
    good.write_bytes(jsonl(chat_record_dict()))
    summary = _ingest(store, tmp_path / "missing.jsonl", good)
    assert summary.stored == 1
    assert summary.errors and summary.errors[0]["file"].endswith("missing.jsonl")


def test_truncated_gzip_keeps_what_was_read_and_reports_the_file(tmp_path: Path, store: SqliteLogStore) -> None:
    records = [chat_record_dict(timestamp=i) for i in range(200)]
    data = gzip.compress(jsonl(*records))
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    summary = _ingest(store, path)
    assert summary.errors, "a truncated gzip must not pass silently"
    assert summary.read > 0
    assert sum(c.records for c in store.counts()) == summary.stored


def test_memory_does_not_grow_with_the_number_of_lines(tmp_path: Path) -> None:
    # Peak traced memory for 4x the lines stays about the same: no per-run state grows with input.
    def peak_for(lines: int) -> int:
        path = tmp_path / f"{lines}.jsonl"
        path.write_bytes(jsonl(*(chat_record_dict(timestamp=i) for i in range(lines))))
        with SqliteLogStore(tmp_path / f"{lines}.sqlite", batch_size=200) as store:
            tracemalloc.start()
            summary = ingest_files([path], store=store, max_record_bytes=MAX, batch_size=200)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        assert summary.stored == lines
        return peak

    small, large = peak_for(1_000), peak_for(4_000)
    assert large < small * 1.5 + (1 << 20), (small, large)
