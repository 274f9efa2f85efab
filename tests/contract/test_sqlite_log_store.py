"""The LogStore contract on the embedded SQLite adapter, plus SQLite-specific behaviour."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.datastore.stores.sqlite import SqliteLogStore
from services.domain.errors import StoreError
from tests.contract.log_store_contract import LogStoreContract
from tests.factories import make_record


class TestSqliteLogStore(LogStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[SqliteLogStore]:
        with SqliteLogStore(tmp_path / "logs.sqlite", batch_size=100) as store:
            yield store


def test_records_survive_reopening(tmp_path: Path) -> None:
    with SqliteLogStore(tmp_path / "logs.sqlite") as store:
        store.write([make_record(i) for i in range(3)])
    with SqliteLogStore(tmp_path / "logs.sqlite") as store:
        assert sum(c.records for c in store.counts()) == 3
        assert store.write([make_record(0)]) == 0


def test_refuses_a_store_of_another_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "logs.sqlite"
    SqliteLogStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="schema version 99"):
        SqliteLogStore(path)


def test_unopenable_path_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "dir.sqlite").mkdir()
    with pytest.raises(StoreError, match="cannot open"):
        SqliteLogStore(tmp_path / "dir.sqlite")


def _open_store(path: str, barrier: object) -> None:
    barrier.wait()  # type: ignore[attr-defined]  # a multiprocessing Barrier
    SqliteLogStore(path).close()


def test_processes_opening_a_fresh_store_at_once_all_succeed(tmp_path: Path) -> None:
    """The datastore worker and a reader (CLI, test, gateway bench) open a new store together: each found no
    schema-version row and inserted one, and the second failed (UNIQUE constraint failed: meta.key)."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    for attempt in range(8):
        path = str(tmp_path / f"logs-{attempt}.sqlite")
        barrier = context.Barrier(6)
        workers = [context.Process(target=_open_store, args=(path, barrier)) for _ in range(6)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        assert [w.exitcode for w in workers] == [0] * 6, f"attempt {attempt}: a process failed to open the store"
        with SqliteLogStore(path) as store:
            assert store._conn.execute("SELECT count(*) FROM meta").fetchone()[0] == 1
