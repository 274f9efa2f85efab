"""The training loop's failure modes on a plain torch model: typed reasons, no silent garbage."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from services.domain.errors import TrainingFailed
from services.domain.settings import TrainingSettings
from services.models.training.base import TrainControl
from services.models.training.loop import run_training


class LinearTask:
    """y = 2x with one linear layer; `fail_at` makes step N misbehave in a chosen way."""

    def __init__(self, *, fail_at: int | None = None, failure: str = "nan") -> None:
        torch.manual_seed(0)
        self.model = torch.nn.Linear(4, 1)
        self.calls, self.fail_at, self.failure = 0, fail_at, failure
        x = torch.randn(64, 4)
        self.batches = [{"x": x[i:i + 8], "y": 2 * x[i:i + 8].sum(dim=1, keepdim=True)} for i in range(0, 64, 8)]

    def epoch_batches(self, epoch: int) -> Sequence[dict[str, torch.Tensor]]:
        return self.batches

    def val_batches(self) -> Sequence[dict[str, torch.Tensor]]:
        return self.batches[:2]

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at and model.training:
            if self.failure == "oom":
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return torch.tensor(float("nan"), requires_grad=True)
        return torch.nn.functional.mse_loss(model(batch["x"]), batch["y"])

    def examples_in(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["x"].shape[0])


SETTINGS = TrainingSettings(epochs=3, batch_size=8, learning_rate=0.05, early_stopping_patience=0)


def test_loss_falls_and_progress_is_reported(tmp_path: Path) -> None:
    seen = []
    result = run_training(LinearTask(), SETTINGS, candidate="linear", work_dir=tmp_path, fingerprint="f",
                          control=TrainControl(on_progress=seen.append, report_every_s=0))
    assert result.steps == 24 and seen[-1].step == 24 and seen[-1].eta_s == 0
    assert result.val_history[-1][1] < result.val_history[0][1]


def test_a_diverged_loss_fails_with_its_reason(tmp_path: Path) -> None:
    with pytest.raises(TrainingFailed, match="diverged") as info:
        run_training(LinearTask(fail_at=3), SETTINGS, candidate="linear", work_dir=tmp_path, fingerprint="f")
    assert info.value.reason == "diverged"


def test_out_of_memory_fails_with_what_to_change(tmp_path: Path) -> None:
    with pytest.raises(TrainingFailed, match="batch_size=8") as info:
        run_training(LinearTask(fail_at=2, failure="oom"), SETTINGS, candidate="linear", work_dir=tmp_path,
                     fingerprint="f")
    assert info.value.reason == "out_of_memory"
    assert "gradient_checkpointing" in str(info.value)


def test_a_checkpoint_of_another_run_is_ignored(tmp_path: Path) -> None:
    fast = SETTINGS.model_copy(update={"checkpoint_every_steps": 5, "max_steps": 10})
    run_training(LinearTask(), fast, candidate="linear", work_dir=tmp_path, fingerprint="run-a")
    assert (tmp_path / "checkpoint" / "state.json").exists()
    other = run_training(LinearTask(), fast, candidate="linear", work_dir=tmp_path, fingerprint="run-b")
    assert other.resumed_from_step is None and other.steps == 10
