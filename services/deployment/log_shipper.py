"""The gateway's traffic log, sent from a child process (`LogShipper`), so sending never shares the
gateway's interpreter lock with the requests it serves.

Why a process: `TrafficLogger` sends a batch to the queue in tens of milliseconds of Python (Celery
message, JSON, the broker's client). In a thread of the gateway's process that work holds the GIL
in turns with the event loop, so the requests that arrive during a send wait: measured at 1
sequential client, p99 of a request through the gateway was 3.0-3.6 ms with the thread and 1.1 ms with
no logging at all; with this shipper the gateway's added p99 is 0.77-0.84 ms (docs/benchmarks.md, issue 19).
A smaller GIL switch interval or smaller batches did not help: the work has to leave the process.

How: `log(record)` only puts the record on an in-memory queue (as before). Every `HANDOVER_WAIT_S` a writer
thread serializes what is queued (pydantic-core, about a microsecond a record) and writes it as JSON lines
to the child's stdin; the child
(`python -m services.deployment.log_shipper`) feeds them to a `TrafficLogger`, which batches, sends,
and spools to `gateway.spool_path` while the queue is down, as it did in the gateway's process. The
child's settings arrive on the first line of its stdin, never on its command line (a broker URL may
hold a password).

What can be lost, as before: records in memory when a process is killed. If the child exits on its
own, the writer spools what it could not hand over and starts a new child, which sends the spool
first. `close()` hands everything over, closes the child's stdin and waits for it to finish sending.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import pydantic_core

from services.deployment.traffic_log import QueuedRecords
from services.domain.settings import GatewaySettings, QueueSettings

log = logging.getLogger(__name__)
_STOP = object()
HANDOVER_BATCH = 256  # records written to the child per write at most
# After the first record of a batch, the writer waits this long for more: one wake-up and one write per batch,
# not per request (each wake-up takes the GIL from the event loop).
HANDOVER_WAIT_S = 0.05
RESTART_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)


class LogShipper(QueuedRecords):
    """Same use as `TrafficLogger` (`start`, `log`, `close`, `spool_depth`); the sending runs in a child process."""

    def __init__(self, queue_settings: QueueSettings, gateway: GatewaySettings, *, max_pending: int = 100_000) -> None:
        super().__init__(gateway.spool_path, max_pending)
        self._config = json.dumps({"queue": queue_settings.model_dump(mode="json"), "spool_path": str(self.spool_path),
                                   "batch_size": gateway.log_batch_size,
                                   "flush_interval_s": gateway.log_flush_interval_s})
        self._thread = threading.Thread(target=self._run, name="traffic-log-writer", daemon=True)
        self._child: subprocess.Popen[bytes] | None = None
        self.handed_over = self.restarts = 0

    def start(self) -> LogShipper:
        self._child = self._spawn()
        self._thread.start()
        return self

    def close(self, timeout: float = 30.0) -> None:
        """Hand over everything pending, then let the child send (or spool) it and exit."""
        self._queue.put(_STOP)
        self._thread.join(timeout)
        child = self._child
        if child is None:
            return
        try:
            if child.stdin is not None:
                child.stdin.close()
        except OSError:
            pass
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            log.error("the traffic log shipper did not finish sending in %.0f s; stopping it (records it still held "
                      "in memory are lost)", timeout)
            child.kill()
            child.wait(5)

    def _spawn(self) -> subprocess.Popen[bytes]:
        root = str(Path(__file__).resolve().parents[2])  # the folder holding this `services` package, wherever it runs
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        # Its own session: a Ctrl-C in the gateway's terminal must not kill it before it has sent what it holds.
        child = subprocess.Popen([sys.executable, "-m", "services.deployment.log_shipper"], stdin=subprocess.PIPE,
                                 env={**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"},
                                 start_new_session=True)
        assert child.stdin is not None
        child.stdin.write(self._config.encode() + b"\n")
        child.stdin.flush()
        return child

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            batch, stop = ([] if first is _STOP else [first]), first is _STOP
            deadline = time.monotonic() + HANDOVER_WAIT_S
            while not stop and len(batch) < HANDOVER_BATCH:
                try:
                    item = self._queue.get(timeout=max(deadline - time.monotonic(), 0.0))
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                else:
                    batch.append(item)
            if batch:
                self._hand_over(batch)
            if stop:
                return

    def _hand_over(self, batch: list[dict[str, Any]]) -> None:
        lines = b"".join(pydantic_core.to_json(record) + b"\n" for record in batch)  # Rust, no GIL-heavy Python
        child = self._child
        why = "not running"
        if child is not None and child.stdin is not None:
            try:
                child.stdin.write(lines)
                child.stdin.flush()
                self.handed_over += len(batch)
                return
            except (OSError, ValueError) as exc:  # the child is gone (a closed pipe): keep the records, start another
                why = f"{exc}, exit code {child.poll()}"
        log.warning("the traffic log shipper is gone (%s); spooling %d calls and starting a new one", why, len(batch))
        self._spool(batch)
        self._restart()

    def _restart(self) -> None:
        if self._child is not None:
            try:
                self._child.wait(5)
            except subprocess.TimeoutExpired:
                self._child.kill()
        time.sleep(RESTART_BACKOFF_S[min(self.restarts, len(RESTART_BACKOFF_S) - 1)])
        self.restarts += 1
        try:
            self._child = self._spawn()
        except OSError as exc:
            log.error("cannot start the traffic log shipper (%s); calls go to the spool until it starts", exc)
            self._child = None


def _serve(stdin: IO[bytes]) -> int:
    """The child: settings on the first line, then one record per line until end of input."""
    from services.deployment.traffic_log import TrafficLogger
    from services.domain.queue import make_celery_app

    config = json.loads(stdin.readline())
    logger = TrafficLogger(make_celery_app(QueueSettings.model_validate(config["queue"]), name="flywheel-log-shipper"),
                           Path(config["spool_path"]), batch_size=config["batch_size"],
                           flush_interval_s=config["flush_interval_s"]).start()
    received = 0
    for line in stdin:
        if line.strip():
            logger.log(json.loads(line))
            received += 1
    logger.close(timeout=60)
    log.info("traffic log shipper: %d calls received, %d sent, %d spooled", received, logger.sent, logger.spooled)
    return 0


if __name__ == "__main__":
    import signal

    # It stops at the end of its input (the gateway closing it, or exiting): a signal to the whole process group
    # (a service manager stopping the gateway) must not cut short the sending of what it holds.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(_serve(sys.stdin.buffer))
