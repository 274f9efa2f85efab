"""GPU paths (bf16 autocast, CUDA memory reporting): skipped where there is no CUDA, as in CI."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.customizer.service import train_candidate
from services.domain.evaluation import EvalKind
from services.evaluator.runner import evaluate
from tests.model_plane import model_plane

pytestmark = pytest.mark.gpu


def test_lora_trains_in_mixed_precision_on_cuda(tmp_path: Path) -> None:
    plane = model_plane(tmp_path, max_steps=6, precision="auto")
    artifact = train_candidate(plane.settings, "tiny-lora", plane.dataset.dataset_id)
    assert artifact.metrics["peak_gpu_mb"] is not None and artifact.metrics["peak_gpu_mb"] > 0
    assert artifact.metrics["steps"] == 6 and artifact.metrics["train_loss"] is not None
    result = evaluate(plane.settings, candidate="tiny-lora", dataset_id=plane.dataset.dataset_id,
                      kind=EvalKind.CUSTOMIZED)
    assert result.applicable and result.score is not None
