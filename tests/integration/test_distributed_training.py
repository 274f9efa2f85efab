"""Data-parallel training through the same code path: 2 CPU processes under torchrun (gloo).

A multi-GPU worker runs exactly this with NCCL; here the stand-in is two CPU ranks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.model_plane import model_plane

pytestmark = pytest.mark.slow


def test_two_ranks_train_one_artifact_and_report_once(tmp_path: Path) -> None:
    plane = model_plane(tmp_path, records=160, max_steps=4, early_stopping_patience=0)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(plane.settings.model_dump(mode="json", exclude={"workloads"})))
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [str(torchrun), "--nproc_per_node", "2", "-m", "orchestrator.cli.main", "--config", str(config),
         "train", "--dataset", plane.dataset.dataset_id[:12], "--student", "tiny-lora", "--json"],
        capture_output=True, text=True, timeout=300, env=env, cwd=Path(__file__).resolve().parents[2],
    )
    assert out.returncode == 0, out.stderr[-3000:]
    artifact = json.loads(out.stdout)  # exactly one JSON document: only rank 0 reports
    assert artifact["metrics"]["processes"] == 2 and artifact["metrics"]["steps"] == 4
    manifests = list((tmp_path / "artifacts" / "students").rglob("flywheel-artifact.json"))
    assert len(manifests) == 1 and not list((tmp_path / "artifacts" / "students").rglob("*.partial"))
