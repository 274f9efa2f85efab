"""`flywheel jobs ...` on tiny local models with the embedded broker: create --wait runs the job
in-process and prints exactly the GET /api/jobs/{id} body; exit codes follow the job's status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from orchestrator.cli.main import cli
from tests.model_plane import model_plane

pytestmark = pytest.mark.usefixtures("isolated_env")


def run(config: Path, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)


def test_jobs_create_wait_list_show_delete(tmp_path: Path) -> None:
    plane = model_plane(tmp_path, records=120, max_steps=3)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(plane.settings.model_dump(mode="json", exclude={"workloads"})))

    created = run(config, "jobs", "create", "--workload", "news_topic", "--candidate", "tiny-clf",
                  "--set", "training.max_steps=2", "--wait", "--json")
    assert created.exit_code == 0, created.output
    view = json.loads(created.stdout)
    assert view["status"] == "completed" and view["overrides"]["training"] == {"max_steps": 2}
    (candidate,) = view["candidates"]
    assert candidate["name"] == "tiny-clf" and candidate["training"]["metrics"]["steps"] == 2
    assert view["decision"]["verdicts"][0]["candidate"] == "tiny-clf"
    assert "customize [tiny-clf]: completed" in created.stderr, "progress is followed on stderr"

    listed = json.loads(run(config, "jobs", "list", "--json").stdout)
    assert listed["total"] == 1 and listed["jobs"][0]["id"] == view["id"]
    shown = run(config, "jobs", "show", view["id"])
    assert shown.exit_code == 0 and "tiny-clf" in shown.stdout and "decision" in shown.stdout
    deleted = json.loads(run(config, "jobs", "delete", view["id"], "--json").stdout)
    assert deleted["deleted"] is True and deleted["artifacts"] == [candidate["training"]["artifact_id"]]

    bad = run(config, "jobs", "create", "--workload", "news_topic", "--candidate", "nope", "--json")
    assert bad.exit_code == 2 and "no candidate named 'nope'" in json.loads(bad.stdout)["error"]["message"]
    missing = run(config, "jobs", "show", "no-such-job", "--json")
    assert missing.exit_code == 1 and json.loads(missing.stdout)["error"]["type"] == "JobNotFound"


def test_a_failed_job_exits_1(tmp_path: Path) -> None:
    plane = model_plane(tmp_path, records=120, max_steps=3)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(plane.settings.model_dump(mode="json", exclude={"workloads"})))
    failed = run(config, "jobs", "create", "--workload", "no_such_workload", "--candidate", "tiny-clf", "--wait", "--json")
    assert failed.exit_code == 1, failed.output
    view = json.loads(failed.stdout)
    assert view["status"] == "failed" and view["error"].startswith("build_dataset failed")
    assert view["stages"][0]["status"] == "failed"
