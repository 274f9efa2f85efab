"""How many CPU threads torch may use, decided per task from the cores this process may run on and
the work already running beside it (docs/model-plane.md, "Threads").

Two trainings that each start as many threads as there are cores, on the same cores, collapse
(measured: MiniLM fell from ~40 to 3.3 examples/s beside one other job), and OpenMP threads that
spin-wait for work make it worse. So: OpenMP waits passively (set before torch loads, in
`services/__init__.py`); training takes the cores not already busy (tasks runnable at its start),
divided among the torch tasks this process runs at once; one request at a time is
served on one thread (a headline through a small encoder gains nothing from more, and requests in
parallel then use the other cores).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

log = logging.getLogger(__name__)
_active = 0
_lock = threading.Lock()


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def busy_cores(samples: int = 5, interval_s: float = 0.05) -> int:
    """Cores other work keeps busy now: the median count of runnable tasks over a few samples (less this one).
    Not the load average: it lags by a minute, so a training that starts just after another ended would take
    one core of two for nothing (measured in bench/contention)."""
    counts = []
    for i in range(samples):
        try:
            with open("/proc/loadavg", encoding="ascii") as handle:
                counts.append(int(handle.read().split()[3].split("/")[0]) - 1)
        except (OSError, IndexError, ValueError):  # not Linux: the load average is what there is
            try:
                return int(os.getloadavg()[0])
            except OSError:
                return 0
        if i + 1 < samples:
            time.sleep(interval_s)
    return max(0, sorted(counts)[len(counts) // 2])


def threads_for(kind: Literal["train", "serve"], *, beside: int = 0) -> int:
    """Threads for one task of `kind` with `beside` other torch tasks running in this process."""
    if kind == "serve":
        return 1
    cores = usable_cores()
    free = max(1, cores - max(0, busy_cores() - beside))  # our own running tasks are counted too
    return max(1, free // (beside + 1))


@contextmanager
def torch_threads(kind: Literal["train", "serve"]) -> Iterator[int]:
    """Set torch's thread count for the duration of a task (process-wide: tasks in threads share it)."""
    global _active
    import torch

    override = os.environ.get("FLYWHEEL_TORCH_THREADS")
    with _lock:
        beside = _active
        _active += 1
        threads = int(override) if override else threads_for(kind, beside=beside)
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
    log.debug("torch threads for %s: %d (%d other tasks here, %d cores)", kind, threads, beside, usable_cores())
    try:
        yield threads
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                torch.set_num_threads(previous)
