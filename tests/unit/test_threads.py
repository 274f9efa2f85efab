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

