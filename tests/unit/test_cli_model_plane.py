"""`flywheel train` and `flywheel evaluate` on tiny local models: the JSON contract and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from orchestrator.cli.main import cli
from tests.model_plane import ModelPlane, model_plane

pytestmark = pytest.mark.usefixtures("isolated_env")


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelPlane, Path]:
    plane = model_plane(tmp_path_factory.mktemp("cli"), records=120, max_steps=4)
    config = plane.root / "config.yaml"
    config.write_text(yaml.safe_dump(plane.settings.model_dump(mode="json", exclude={"workloads"})))
    return plane, config


def run(config: Path, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)


def test_train_then_evaluate_json(plane: tuple[ModelPlane, Path]) -> None:
    model, config = plane
    dataset = model.dataset.dataset_id[:12]
    trained = run(config, "train", "--dataset", dataset, "--student", "tiny-lora", "--json")
    assert trained.exit_code == 0, trained.output
    artifact = json.loads(trained.stdout)
    assert artifact["kind"] == "causal_lm_lora" and artifact["metrics"]["steps"] == 4
    evaluated = run(config, "evaluate", "--dataset", dataset, "--candidate", f"tiny-lora:{artifact['artifact_id'][:10]}",
                    "--kind", "customized", "--kind", "base", "--json")
    assert evaluated.exit_code == 0, evaluated.output
    body = json.loads(evaluated.stdout)
    assert set(body["evaluations"]) == {"customized", "base"}
    customized = body["evaluations"]["customized"]
    assert customized["artifact_id"] == artifact["artifact_id"]
    assert 0 <= customized["f1_vs_teacher"] <= 1 and len(customized["f1_vs_teacher_ci"]) == 2


def test_bad_override_is_a_usage_error_with_the_key(plane: tuple[ModelPlane, Path]) -> None:
    model, config = plane
    result = run(config, "train", "--dataset", model.dataset.dataset_id[:12], "--student", "tiny-lora",
                 "--set", "learning_rate=-1", "--json")
    assert result.exit_code == 2
    error = json.loads(result.stdout)["error"]
    assert error["type"] == "ConfigError" and "learning_rate" in error["message"]


def test_unknown_candidate_names_the_known_ones(plane: tuple[ModelPlane, Path]) -> None:
    model, config = plane
    result = run(config, "train", "--dataset", model.dataset.dataset_id[:12], "--student", "nope", "--json")
    assert result.exit_code == 2
    assert "tiny-lora" in json.loads(result.stdout)["error"]["message"]


def test_unknown_dataset_says_how_to_list_them(plane: tuple[ModelPlane, Path]) -> None:
    _, config = plane
    result = run(config, "evaluate", "--dataset", "ffff", "--candidate", "tiny-clf", "--json")
    assert result.exit_code == 1
    assert "flywheel datasets list" in json.loads(result.stdout)["error"]["message"]


def test_decide_judges_the_saved_evaluations(plane: tuple[ModelPlane, Path]) -> None:
    model, config = plane
    dataset = model.dataset.dataset_id[:12]
    assert run(config, "train", "--dataset", dataset, "--student", "tiny-lora", "--json").exit_code == 0
    assert run(config, "evaluate", "--dataset", dataset, "--candidate", "tiny-lora", "--kind", "customized",
               "--json").exit_code == 0
    decided = run(config, "decide", "--dataset", dataset, "--json")
    assert decided.exit_code == 0, decided.output
    body = json.loads(decided.stdout)
    # 4 training steps of a random tiny model on a 24-record eval set: the teacher stays.
    assert body["chosen"] is None and body["reason"].startswith("keep the teacher")
    verdict = next(v for v in body["verdicts"] if v["candidate"] == "tiny-lora")
    assert any("eval set has 24 records" in r for r in verdict["reasons"])
