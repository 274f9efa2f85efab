"""The LogStore contract: every adapter (SQLite here; OpenSearch and Elasticsearch in the
datastore issue) runs this same class by subclassing it and providing a `store` fixture."""

from __future__ import annotations

import time
import types

import pytest

from services.datastore.stores.base import LogStore, QuarantineEntry
from tests.factories import make_record


def _entry(line: int, reason: str = "invalid_json", sha: str = "a" * 64, at: float | None = None) -> QuarantineEntry:
    return QuarantineEntry(
        file_sha256=sha,
        line=line,
        source="logs.jsonl",
        reason=reason,
        detail="broken",
        raw=b"{not json",
        size_bytes=9,
        received_at=at if at is not None else time.time(),
    )


class LogStoreContract:
    """Subclasses provide a fixture named `store` yielding an empty adapter."""

    def test_is_a_log_store(self, store: LogStore) -> None:
        assert isinstance(store, LogStore)

    def test_write_is_idempotent_on_record_id(self, store: LogStore) -> None:
        records = [make_record(i) for i in range(5)]
        assert store.write(records) == 5
        assert store.write(records) == 0
        assert store.write([records[0], make_record(99)]) == 1
        assert sum(c.records for c in store.counts()) == 6

    def test_duplicates_inside_one_write_are_stored_once(self, store: LogStore) -> None:
        record = make_record(1)
        assert store.write([record, record, record]) == 1

    def test_export_is_newest_first_with_ties_by_id_descending(self, store: LogStore) -> None:
        same_time = [make_record(i, timestamp=1_760_000_500) for i in range(3)]
        store.write([make_record(1), make_record(2), *same_time, make_record(3)])
        out = list(store.export(workload_id="news_topic"))
        keys = [(r.timestamp, r.id) for r in out]
        assert keys == sorted(keys, reverse=True)
        assert len(out) == 6

    def test_export_round_trips_records_exactly(self, store: LogStore) -> None:
        original = make_record(7)
        store.write([original])
        (exported,) = store.export(workload_id="news_topic")
        assert exported == original
        assert exported.id == original.id

    def test_export_filters_by_client_window_and_limit(self, store: LogStore) -> None:
        store.write([make_record(i, client_id="a") for i in range(10)])
        store.write([make_record(i, client_id="b") for i in range(10, 15)])
        store.write([make_record(i, workload_id="other") for i in range(3)])
        assert len(list(store.export(workload_id="news_topic"))) == 15
        assert len(list(store.export(workload_id="news_topic", client_id="b"))) == 5
        window = list(store.export(workload_id="news_topic", client_id="a", since=1_760_000_002, until=1_760_000_005))
        assert [r.timestamp for r in window] == [1_760_000_004, 1_760_000_003, 1_760_000_002]
        newest = list(store.export(workload_id="news_topic", limit=4))
        assert [r.timestamp for r in newest] == [1_760_000_014, 1_760_000_013, 1_760_000_012, 1_760_000_011]
        assert list(store.export(workload_id="missing")) == []

    def test_export_pages_through_more_than_one_page(self, store: LogStore) -> None:
        # 2,500 records with many timestamp ties cross the 1,000-record page boundary twice.
        store.write([make_record(i, timestamp=1_760_000_000 + i // 7) for i in range(2500)])
        ids = [r.id for r in store.export(workload_id="news_topic")]
        assert len(ids) == 2500
        assert len(set(ids)) == 2500
        assert len(list(store.export(workload_id="news_topic", limit=1500))) == 1500

    def test_export_streams_lazily(self, store: LogStore) -> None:
        store.write([make_record(i) for i in range(10)])
        stream = store.export(workload_id="news_topic")
        assert isinstance(stream, types.GeneratorType)
        assert next(stream).timestamp == 1_760_000_009

    def test_counts_per_workload_and_client(self, store: LogStore) -> None:
        store.write([make_record(i, client_id="a") for i in range(3)])
        store.write([make_record(i, client_id="b", workload_id="w2") for i in range(2)])
        counts = {(c.workload_id, c.client_id): c.records for c in store.counts()}
        assert counts == {("news_topic", "a"): 3, ("w2", "b"): 2}
        first = store.counts()[0]
        assert (first.first_timestamp, first.last_timestamp) == (1_760_000_000, 1_760_000_002)

    def test_delete_by_workload_and_client(self, store: LogStore) -> None:
        store.write([make_record(i, client_id="a") for i in range(3)])
        store.write([make_record(i, client_id="b") for i in range(3, 5)])
        store.write([make_record(i, client_id="a", workload_id="w2") for i in range(2)])
        assert store.delete(workload_id="news_topic", client_id="b") == 2
        assert store.delete(client_id="a") == 5
        assert store.counts() == []
        with pytest.raises(ValueError):
            store.delete()

    def test_quarantine_is_idempotent_on_file_and_line(self, store: LogStore) -> None:
        assert store.quarantine([_entry(1), _entry(2, "not_utf8")]) == 2
        assert store.quarantine([_entry(1), _entry(2, "not_utf8")]) == 0
        assert store.quarantine([_entry(1, sha="b" * 64)]) == 1
        assert store.quarantine_counts() == {"invalid_json": 2, "not_utf8": 1}

    def test_quarantined_reads_back_newest_first_with_filters(self, store: LogStore) -> None:
        store.quarantine([_entry(1, at=100.0), _entry(2, "not_utf8", at=200.0), _entry(3, at=300.0)])
        lines = [e.line for e in store.quarantined()]
        assert lines == [3, 2, 1]
        assert [e.line for e in store.quarantined(reason="invalid_json")] == [3, 1]
        assert [e.line for e in store.quarantined(limit=1)] == [3]
        entry = next(store.quarantined(reason="not_utf8"))
        assert entry.raw == b"{not json" and entry.source == "logs.jsonl" and entry.size_bytes == 9
