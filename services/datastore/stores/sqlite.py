"""The embedded log store: one SQLite file (WAL), no server. The default for laptops and tests."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import suppress
from itertools import islice
from pathlib import Path

from services.datastore.stores.base import QuarantineEntry, StreamCount
from services.domain.errors import StoreError
from services.domain.records import LogRecord

SCHEMA_VERSION = 1
_PAGE = 1000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- A rowid table on purpose: WITHOUT ROWID would keep the bodies in the random-sha256-keyed
-- B-tree and split pages on every insert (14k vs 37k rows/s in a 100k-row test).
CREATE TABLE IF NOT EXISTS log_records (
    id          TEXT PRIMARY KEY,
    workload_id TEXT NOT NULL,
    client_id   TEXT NOT NULL,
    timestamp   REAL NOT NULL,
    call_type   TEXT NOT NULL,
    body        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_records_stream
    ON log_records (workload_id, client_id, timestamp DESC, id DESC);
CREATE INDEX IF NOT EXISTS ix_records_workload
    ON log_records (workload_id, timestamp DESC, id DESC);
CREATE TABLE IF NOT EXISTS quarantine (
    file_sha256 TEXT NOT NULL,
    line        INTEGER NOT NULL,
    source      TEXT NOT NULL,
    reason      TEXT NOT NULL,
    detail      TEXT NOT NULL,
    raw         BLOB NOT NULL,
    size_bytes  INTEGER NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (file_sha256, line)
);
CREATE INDEX IF NOT EXISTS ix_quarantine_reason ON quarantine (reason, received_at DESC);
CREATE INDEX IF NOT EXISTS ix_quarantine_received ON quarantine (received_at DESC);
"""


class SqliteLogStore:
    """LogStore over a SQLite file. Safe to share between threads of one process."""

    def __init__(self, path: str | Path, *, batch_size: int = 1000) -> None:
        self.path = Path(path)
        self.batch_size = batch_size
        self._lock = threading.RLock()
        try:
            if str(path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(str(path), check_same_thread=False, timeout=30.0)
            deadline = time.monotonic() + 30.0
            while True:  # switching a fresh file to WAL while another process does is refused at once, not waited on
                try:
                    self._prepare()
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        except (sqlite3.Error, OSError) as exc:  # OSError: the folder cannot be made (a file there, read-only disk)
            raise StoreError(f"cannot open the SQLite log store at {path}: {exc}") from exc

    def _prepare(self) -> None:
        """Pragmas, tables and the schema version: every step idempotent, so a refused attempt is simply retried."""
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA wal_autocheckpoint=20000")
        self._conn.execute("PRAGMA cache_size=-65536")  # 64 MiB: random-key index pages stay hot
        self._conn.executescript(_SCHEMA)
        self._check_schema_version()

    def _check_schema_version(self) -> None:
        row = self._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:  # a fresh store; OR IGNORE: another process opening it at the same moment may write it first
            with self._conn:
                self._conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                                   (str(SCHEMA_VERSION),))
            row = self._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if int(row[0]) != SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has log-store schema version {row[0]}, this code expects {SCHEMA_VERSION}"
            )

    def write(self, records: Iterable[LogRecord]) -> int:
        stored = 0
        iterator = iter(records)
        while batch := list(islice(iterator, self.batch_size)):
            rows = [
                (r.id, r.workload_id, r.client_id, float(r.timestamp), r.call_type.value, r.canonical_json())
                for r in batch
            ]
            stored += self._execute_counting(
                "INSERT OR IGNORE INTO log_records (id, workload_id, client_id, timestamp, call_type, body)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
        return stored

    def _execute_counting(self, sql: str, rows: Sequence[tuple[object, ...]]) -> int:
        with self._lock:
            try:
                before = self._conn.total_changes
                with self._conn:
                    self._conn.executemany(sql, rows)
                return self._conn.total_changes - before
            except sqlite3.Error as exc:
                raise StoreError(f"writing to the SQLite log store {self.path} failed: {exc}") from exc

    def export(
        self,
        *,
        workload_id: str,
        client_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> Iterator[LogRecord]:
        where = ["workload_id = ?"]
        params: list[object] = [workload_id]
        if client_id is not None:
            where.append("client_id = ?")
            params.append(client_id)
        if since is not None:
            where.append("timestamp >= ?")
            params.append(float(since))
        if until is not None:
            where.append("timestamp < ?")
            params.append(float(until))
        remaining = limit
        cursor: tuple[float, str] | None = None
        # Keyset paging (like search_after): no read transaction stays open between pages.
        while remaining is None or remaining > 0:
            page = _PAGE if remaining is None else min(_PAGE, remaining)
            clauses, args = list(where), list(params)
            if cursor is not None:
                # A row-value comparison lets SQLite seek the index; the equivalent OR form scans
                # from the top on every page (quadratic export time).
                clauses.append("(timestamp, id) < (?, ?)")
                args.extend([cursor[0], cursor[1]])
            sql = (
                f"SELECT id, timestamp, body FROM log_records WHERE {' AND '.join(clauses)}"
                " ORDER BY timestamp DESC, id DESC LIMIT ?"
            )
            with self._lock:
                try:
                    rows = self._conn.execute(sql, [*args, page]).fetchall()
                except sqlite3.Error as exc:
                    raise StoreError(f"reading the SQLite log store {self.path} failed: {exc}") from exc
            for _, _, body in rows:
                yield LogRecord.from_canonical_json(body)  # bodies are canonical JSON (see write)
            if len(rows) < page:
                return
            cursor = (rows[-1][1], rows[-1][0])
            if remaining is not None:
                remaining -= len(rows)

    def counts(self) -> list[StreamCount]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT workload_id, client_id, COUNT(*), MIN(timestamp), MAX(timestamp) FROM log_records"
                " GROUP BY workload_id, client_id ORDER BY workload_id, client_id"
            ).fetchall()
        return [StreamCount(w, c, n, lo, hi) for w, c, n, lo, hi in rows]

    def delete(self, *, workload_id: str | None = None, client_id: str | None = None) -> int:
        if workload_id is None and client_id is None:
            raise ValueError("delete needs a workload_id, a client_id or both")
        where, params = [], []
        if workload_id is not None:
            where.append("workload_id = ?")
            params.append(workload_id)
        if client_id is not None:
            where.append("client_id = ?")
            params.append(client_id)
        with self._lock:
            try:
                with self._conn:
                    cur = self._conn.execute(f"DELETE FROM log_records WHERE {' AND '.join(where)}", params)
                return cur.rowcount
            except sqlite3.Error as exc:
                raise StoreError(f"deleting from the SQLite log store {self.path} failed: {exc}") from exc

    def quarantine(self, entries: Iterable[QuarantineEntry]) -> int:
        rows = [
            (e.file_sha256, e.line, e.source, e.reason, e.detail, e.raw, e.size_bytes, e.received_at)
            for e in entries
        ]
        if not rows:
            return 0
        return self._execute_counting(
            "INSERT OR IGNORE INTO quarantine"
            " (file_sha256, line, source, reason, detail, raw, size_bytes, received_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )

    def quarantined(self, *, reason: str | None = None, limit: int | None = None) -> Iterator[QuarantineEntry]:
        sql = "SELECT file_sha256, line, source, reason, detail, raw, size_bytes, received_at FROM quarantine"
        params: list[object] = []
        if reason is not None:
            sql += " WHERE reason = ?"
            params.append(reason)
        sql += " ORDER BY received_at DESC, file_sha256, line"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with self._lock:
            rows = self._conn.execute(sql, params).fetchall()
        for f, line, source, why, detail, raw, size, at in rows:
            yield QuarantineEntry(f, line, source, why, detail, bytes(raw), size, at)

    def quarantine_counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT reason, COUNT(*) FROM quarantine GROUP BY reason ORDER BY reason"
            ).fetchall()
        return dict(rows)

    def close(self) -> None:
        with self._lock, suppress(sqlite3.Error):
            self._conn.close()

    def __enter__(self) -> SqliteLogStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
