"""A flush that runs on a daemon thread every few seconds and once more on close: how the gateway's
in-memory counters (traffic, usage limits) reach the database without touching the request path."""

from __future__ import annotations

import threading
from collections.abc import Callable


class PeriodicFlush:
    def __init__(self, flush: Callable[[], None], *, interval_s: float, name: str) -> None:
        self.flush, self.interval_s, self.name = flush, interval_s, name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self.interval_s):
                self.flush()

        self._thread = threading.Thread(target=loop, name=self.name, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the thread, then flush what came in since its last run."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush()
