"""Log teacher calls without ever blocking or failing a user request.

`TrafficLogger.log(record)` only appends to an in-memory queue. A background thread sends
batches (every `log_batch_size` records or `log_flush_interval_s`) to the datastore as the
`datastore.ingest_records` task, by name. When the queue (broker) cannot be reached, the batch
is appended to a local spool file (JSON Lines, fsynced) and re-sent before newer records once
sending works again. Nothing is lost; nothing is doubled, because record ids are content hashes
and the store ignores an id it already holds.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from services.domain.tasks import INGEST_RECORDS, QUEUE_OF

log = logging.getLogger(__name__)


class TrafficSink(Protocol):
    """What the gateway logs through: `TrafficLogger` (a thread of its own process, what tests inject) or
    `log_shipper.LogShipper` (a child process, what `flywheel serve gateway` uses)."""

    def log(self, record: dict[str, Any]) -> None: ...

    def close(self, timeout: float = ...) -> None: ...

    @property
    def spool_depth(self) -> int: ...


class SpoolLock:
    """Who may touch a spool file: one thread of this process (a thread lock) and one process (an exclusive
    `flock` on `<spool>.lock`). The gateway appends on queue overflow while its log shipper, a child process,
    renames the spool to re-send it or writes back what it could not send: without the file lock an append could
    land in a file already read (and be dropped with it) or be overwritten by the write-back."""

    def __init__(self, spool_path: Path) -> None:
        self.path = spool_path.with_name(spool_path.name + ".lock")
        self._thread_lock = threading.Lock()

    @contextmanager
    def held(self) -> Iterator[None]:
        with self._thread_lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)  # released when the handle closes
                yield


def append_to_spool(path: Path, records: list[dict[str, Any]]) -> None:
    """Append records to a spool file as JSON lines, fsynced (the caller holds the spool's `SpoolLock`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, separators=(",", ":")) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def spool_depth(path: Path) -> int:
    """Records waiting in a spool file."""
    if not path.exists():
        return 0
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())


class QueuedRecords:
    """The request path's side of a traffic log: `log` queues a record in memory (bounded; past the bound it goes
    to the spool file at once, never blocking the request), `spool_depth` counts what waits in the spool."""

    def __init__(self, spool_path: Path, max_pending: int) -> None:
        self.spool_path = Path(spool_path)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_pending)
        self._spool_lock = SpoolLock(self.spool_path)
        self.spooled = 0

    def log(self, record: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(record)
        except queue.Full:  # memory bound reached: spool directly rather than block the request
            self._spool([record])

    @property
    def spool_depth(self) -> int:
        return spool_depth(self.spool_path)

    def _spool(self, batch: list[dict[str, Any]]) -> None:
        with self._spool_lock.held():
            append_to_spool(self.spool_path, batch)
            self.spooled += len(batch)


class TrafficLogger(QueuedRecords):
    def __init__(self, celery_app: Any, spool_path: Path, *, batch_size: int = 200, flush_interval_s: float = 1.0,
                 max_pending: int = 100_000) -> None:
        super().__init__(spool_path, max_pending)
        self.app = celery_app
        self.batch_size, self.flush_interval_s = batch_size, flush_interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="traffic-logger", daemon=True)
        self.sent = 0

    def start(self) -> TrafficLogger:
        self._thread.start()
        return self

    def close(self, timeout: float = 10.0) -> None:
        """Send (or spool) everything pending, then stop."""
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set() or not self._queue.empty():
            batch = self._take()
            if self.spool_path.exists() and not self._flush_spool():
                if batch:
                    self._spool(batch)  # still down: keep order, skip another slow attempt
                continue
            if batch:
                self._send(batch)

    def _take(self) -> list[dict[str, Any]]:
        batch: list[dict[str, Any]] = []
        deadline = time.monotonic() + self.flush_interval_s
        while len(batch) < self.batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(self._queue.get(timeout=min(remaining, 0.2)))
            except queue.Empty:
                if self._stop.is_set():
                    break
        return batch

    def _send(self, batch: list[dict[str, Any]]) -> bool:
        try:
            self.app.send_task(INGEST_RECORDS, kwargs={"payload": {"records": batch, "source": "gateway"}},
                               queue=QUEUE_OF[INGEST_RECORDS], retry=False, ignore_result=True)
        except Exception as exc:  # noqa: BLE001 - the broker is down: spool, never fail the request path
            log.warning("cannot send %d logged calls to the datastore (%s); spooling to %s", len(batch), exc,
                        self.spool_path)
            self._spool(batch)
            return False
        self.sent += len(batch)
        return True

    def _flush_spool(self) -> bool:
        """Re-send spooled records in batches; keep the spool if sending still fails."""
        with self._spool_lock.held():
            sending = self.spool_path.with_suffix(".sending")
            if not sending.exists():
                self.spool_path.replace(sending)
        with sending.open(encoding="utf-8") as handle:
            records = [json.loads(line) for line in handle if line.strip()]
        for start in range(0, len(records), self.batch_size):
            chunk = records[start:start + self.batch_size]
            try:
                self.app.send_task(INGEST_RECORDS, kwargs={"payload": {"records": chunk, "source": "gateway-spool"}},
                                   queue=QUEUE_OF[INGEST_RECORDS], retry=False, ignore_result=True)
            except Exception:  # noqa: BLE001 - still down: put the unsent rest back in front of the spool
                with self._spool_lock.held():
                    rest = records[start:]
                    newer = self.spool_path.read_text("utf-8") if self.spool_path.exists() else ""
                    self.spool_path.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rest)
                                               + newer, encoding="utf-8")
                    sending.unlink(missing_ok=True)
                return False
            self.sent += len(chunk)
        sending.unlink(missing_ok=True)
        log.info("flushed %d spooled calls to the datastore", len(records))
        return True
