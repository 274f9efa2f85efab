"""How many CPU threads torch may use, decided per task from the cores this process may run on and
the work already running beside it (docs/model-plane.md, "Threads").

Two trainings that each start as many threads as there are cores, on the same cores, collapse
(measured: MiniLM fell from ~40 to 3.3 examples/s beside one other job), and OpenMP threads that
spin-wait for work make it worse. So: OpenMP waits passively (set before torch loads, in
`services/__init__.py`); training takes the cores not already busy (tasks runnable at its start),
divided among the torch tasks this process runs at once; one request at a time is
served on one thread (a headline through a small encoder gains nothing from more, and requests in
parallel then use the other cores).

Two trainings that start at the same moment both see idle cores. So each training also *claims* its
threads in a small per-user directory (a file per task, under a file lock): a task that finds other
live claims takes its fair share of the cores, and a running task gives back what it took beyond
its share when a claim appears (`rebalance`, called between training steps and encoding batches;
it only lists the directory, at most once a second).
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
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


def threads_for(kind: Literal["train", "serve"], *, beside: int = 0, claimed_elsewhere: int = 0) -> int:
    """Threads for one task of `kind` with `beside` other torch tasks running in this process and
    `claimed_elsewhere` training tasks of other processes holding claims (they give back their excess)."""
    if kind == "serve":
        return 1
    cores = usable_cores()
    share = max(1, cores // (beside + claimed_elsewhere + 1))
    if claimed_elsewhere:
        return share
    free = max(1, cores - max(0, busy_cores() - beside))  # our own running tasks are counted too
    return max(1, min(share, free // (beside + 1)))


def claims_dir() -> Path:
    """Where training tasks claim their threads: FLYWHEEL_THREAD_CLAIMS_DIR, else a per-user folder in the
    runtime (or temporary) directory."""
    override = os.environ.get("FLYWHEEL_THREAD_CLAIMS_DIR")
    if override:
        return Path(override)
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / f"flywheel-threads-{os.getuid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class Claims:
    """Training tasks' thread claims: one file per task, `<pid>-<task>`, holding its thread count."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or claims_dir()

    @contextmanager
    def locked(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / ".lock", "a+", encoding="ascii") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def others(self) -> int:
        """Live claims of other processes (stale ones, of processes gone, are removed)."""
        count = 0
        for path in self.directory.glob("*-*"):
            try:
                pid = int(path.name.split("-", 1)[0])
            except ValueError:
                continue
            if pid == os.getpid():
                continue
            if _alive(pid):
                count += 1
            else:
                path.unlink(missing_ok=True)
        return count

    def write(self, task: int, threads: int) -> Path:
        path = self.directory / f"{os.getpid()}-{task}"
        path.write_text(str(threads), encoding="ascii")
        return path


_claims: Claims | None = None
_claimed: dict[int, Path] = {}  # this process's training tasks: task number -> claim file
_next_task = 0
_last_check = 0.0
_last_others = 0


def _claims_store() -> Claims | None:
    global _claims
    if _claims is None:
        try:
            _claims = Claims()
            _claims.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # an unwritable runtime directory: no claims, the load-based policy alone
            log.debug("no thread claims: %s", exc)
            return None
    return _claims


def rebalance(*, every_s: float = 1.0) -> None:
    """Between steps of a training: when the other processes' claims changed, take the fair share again
    (fewer threads when a training started beside this one, more when one ended). Cheap: at most one
    directory listing a second; nothing when this process trains nothing or FLYWHEEL_TORCH_THREADS is set."""
    global _last_check, _last_others
    if not _claimed or os.environ.get("FLYWHEEL_TORCH_THREADS"):
        return
    now = time.monotonic()
    if now - _last_check < every_s:
        return
    _last_check = now
    claims = _claims_store()
    if claims is None:
        return
    with _lock, claims.locked():
        others = claims.others()
        if others == _last_others:
            return
        _last_others = others
        import torch

        threads = threads_for("train", beside=len(_claimed) - 1, claimed_elsewhere=others)
        if threads != torch.get_num_threads():
            log.info("torch threads %d -> %d (%d training tasks beside this process's %d)",
                     torch.get_num_threads(), threads, others, len(_claimed))
            torch.set_num_threads(threads)
            for task in _claimed:
                claims.write(task, threads)


@contextmanager
def torch_threads(kind: Literal["train", "serve"]) -> Iterator[int]:
    """Set torch's thread count for the duration of a task (process-wide: tasks in threads share it)."""
    global _active, _next_task, _last_others
    import torch

    override = os.environ.get("FLYWHEEL_TORCH_THREADS")
    claims = _claims_store() if kind == "train" and not override else None
    task = None
    with _lock:
        beside = _active
        _active += 1
        if claims is not None:
            with claims.locked():  # two trainings starting at once decide one after the other
                others = claims.others()
                threads = threads_for(kind, beside=beside, claimed_elsewhere=others)
                task, _next_task = _next_task, _next_task + 1
                _claimed[task] = claims.write(task, threads)
                _last_others = others
        else:
            threads = int(override) if override else threads_for(kind, beside=beside)
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
    log.debug("torch threads for %s: %d (%d other tasks here, %d cores)", kind, threads, beside, usable_cores())
    try:
        yield threads
    finally:
        with _lock:
            _active -= 1
            if task is not None:
                _claimed.pop(task).unlink(missing_ok=True)
            if _active == 0:
                torch.set_num_threads(previous)
