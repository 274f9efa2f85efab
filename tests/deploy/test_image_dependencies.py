"""What each image installs: torch per image, one shared CPU builder, no model plane in the control plane."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.deploy.dockerfiles import DOCKER, REPO

MODEL_PLANE = {"torch", "transformers", "peft", "accelerate", "sentence-transformers", "safetensors", "gguf"}



def _control_plane_requirements() -> list[str]:
    """requirements/base.txt up to its '# model plane' line: what the orchestrator image installs."""
    lines = (REPO / "requirements" / "base.txt").read_text(encoding="utf-8").splitlines()
    assert "# model plane" in lines, "requirements/base.txt lost its '# model plane' line that docker/ relies on"
    return [line for line in lines[: lines.index("# model plane")] if line.strip() and not line.startswith("#")]


def test_the_control_plane_set_pulls_no_torch() -> None:
    """The orchestrator image's requirements, followed through installed metadata: no model plane."""
    from importlib import metadata

    from packaging.requirements import Requirement

    todo = [Requirement(r) for r in _control_plane_requirements()]
    seen: set[str] = set()
    while todo:
        requirement = todo.pop()
        name = requirement.name.lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an extra's optional dependency not installed here: not pulled in by pip either
        for raw in dist.requires or []:
            dependency = Requirement(raw)
            extras = requirement.extras or {""}
            if dependency.marker is None or any(dependency.marker.evaluate({"extra": e}) for e in extras):
                todo.append(dependency)
    assert not seen & MODEL_PLANE, f"the control plane pulls in {sorted(seen & MODEL_PLANE)}"
    assert {"fastapi", "celery", "mlflow", "psycopg", "opensearch-py"} <= seen


def test_the_api_and_beat_never_import_torch(tmp_path: Path) -> None:
    """What lets the orchestrator image leave torch out: building the API app imports none of it."""
    code = (
        "import sys\n"
        "from orchestrator.api.app import create_app\n"
        "from orchestrator.jobs.store import JobStore\n"
        "from orchestrator.schedules import beat_schedule\n"
        "from services.domain.settings import load_settings\n"
        f"settings = load_settings({str(DOCKER / 'config.compose.yaml')!r})\n"
        f"create_app(settings, store=JobStore('sqlite:///{tmp_path}/jobs.sqlite'), celery_app=None)\n"
        "beat_schedule(settings, ('a', 'b'))\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'peft', 'sentence_transformers') if m in sys.modules)\n"
        "print(heavy)\n"
        "sys.exit(1 if heavy else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            timeout=240, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stdout + result.stderr
