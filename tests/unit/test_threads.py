"""Torch thread counts follow the cores this process may use and the work beside it."""

from __future__ import annotations

import pytest

from services.models.runtime import threads


def test_training_takes_the_free_cores_shared_among_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "usable_cores", lambda: 8)
    monkeypatch.setattr(threads, "busy_cores", lambda: 0)
    assert threads.threads_for("train") == 8
    assert threads.threads_for("train", beside=1) == 4, "two trainings in one process split the cores"
    monkeypatch.setattr(threads, "busy_cores", lambda: 6)
    assert threads.threads_for("train") == 2, "another job keeps 6 cores busy"
    monkeypatch.setattr(threads, "busy_cores", lambda: 20)
    assert threads.threads_for("train") == 1, "never fewer than one"
    assert threads.threads_for("serve") == 1, "one request, one thread"


def test_the_count_is_set_for_a_task_and_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    before = torch.get_num_threads()
    monkeypatch.setenv("FLYWHEEL_TORCH_THREADS", "1")
    with threads.torch_threads("train") as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before



def test_claims_elsewhere_get_a_fair_share(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "usable_cores", lambda: 8)
    monkeypatch.setattr(threads, "busy_cores", lambda: 0)
    assert threads.threads_for("train", claimed_elsewhere=1) == 4, "a training that just claimed, not yet busy"
    assert threads.threads_for("train", claimed_elsewhere=3) == 2
    assert threads.threads_for("train", beside=1, claimed_elsewhere=1) == 2


def _train_beside(index: int, directory: str, barrier, results) -> None:  # type: ignore[no-untyped-def]
    """A child process: claim threads at the same moment as its sibling, then rebalance."""
    import os

    import torch

    os.environ["FLYWHEEL_THREAD_CLAIMS_DIR"] = directory
    os.environ.pop("FLYWHEEL_TORCH_THREADS", None)
    threads.usable_cores = lambda: 8  # type: ignore[assignment]  # the test's machine, whatever runs it
    threads.busy_cores = lambda samples=5, interval_s=0.05: 0  # type: ignore[assignment]
    barrier.wait()
    with threads.torch_threads("train") as started:
        barrier.wait()  # both hold a claim now
        threads.rebalance(every_s=0)
        results.put((index, started, torch.get_num_threads()))
        barrier.wait()  # keep the claim until both have rebalanced


def test_two_trainings_starting_at_once_share_the_cores(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Two real processes start a training at the same moment: they decide one after the other under the
    claims lock, and after one rebalance they hold the 8 cores between them, not 8 each."""
    import multiprocessing as mp

    context = mp.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    (tmp_path / "99999999-0").write_text("4")  # the claim of a process that is gone: removed, not counted
    children = [context.Process(target=_train_beside, args=(i, str(tmp_path), barrier, results)) for i in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=120)
        assert child.exitcode == 0
    outcomes = sorted(results.get(timeout=5) for _ in children)
    started = sorted(s for _, s, _ in outcomes)
    assert started == [4, 8], "the second to decide saw the first's claim"
    assert [after for _, _, after in outcomes] == [4, 4], "the first gave back its excess"
    assert not (tmp_path / "99999999-0").exists()
    assert not list(tmp_path.glob("*-*")), "claims are released when the trainings end"
