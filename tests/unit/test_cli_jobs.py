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
    shown = run(config, "jobs", "show", view["id"][:8])  # the short id the dashboard shows
    assert shown.exit_code == 0 and "tiny-clf" in shown.stdout and "decision" in shown.stdout
    deleted = json.loads(run(config, "jobs", "delete", view["id"], "--json").stdout)
    assert deleted["deleted"] is True and deleted["artifacts"] == [candidate["training"]["artifact_id"]]

    bad = run(config, "jobs", "create", "--workload", "news_topic", "--candidate", "nope", "--json")
    assert bad.exit_code == 2 and "no candidate named 'nope'" in json.loads(bad.stdout)["error"]["message"]
    missing = run(config, "jobs", "show", "no-such-job", "--json")
    assert missing.exit_code == 1 and json.loads(missing.stdout)["error"]["type"] == "JobNotFound"


def test_a_job_for_a_workload_without_records_is_refused_at_once(tmp_path: Path) -> None:
    plane = model_plane(tmp_path, records=120, max_steps=3)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(plane.settings.model_dump(mode="json", exclude={"workloads"})))
    refused = run(config, "jobs", "create", "--workload", "no_such_workload", "--candidate", "tiny-clf", "--wait", "--json")
    assert refused.exit_code == 1, refused.output
    error = json.loads(refused.stdout)["error"]
    assert error["type"] == "InsufficientData" and "workloads with records: news_topic" in error["message"]
    assert json.loads(run(config, "jobs", "list", "--json").stdout)["total"] == 0, "nothing was queued"


def test_a_job_where_no_candidate_could_run_fails_with_the_reason(tmp_path: Path) -> None:
    """An embedding student cannot learn a classification workload: it is left out (the decision says why),
    and a job that trained and evaluated nothing is failed, not a green keep-the-teacher."""
    plane = model_plane(tmp_path, records=120, max_steps=3)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(plane.settings.model_dump(mode="json", exclude={"workloads"})))
    failed = run(config, "jobs", "create", "--workload", "news_topic", "--candidate", "tiny-emb", "--wait", "--json")
    assert failed.exit_code == 1, failed.output
    view = json.loads(failed.stdout)
    assert view["status"] == "failed" and view["error"].startswith("no candidate was trained and evaluated")
    (verdict,) = view["decision"]["verdicts"]
    assert verdict["candidate"] == "tiny-emb" and "cannot learn a classification workload" in verdict["reasons"][0]
    assert verdict["reasons"][0].startswith("skipped: ")


def test_jobs_create_stderr_is_quiet_progress_only(tmp_path: Path) -> None:
    """Run as a user does (a real process): stderr holds our progress lines, once per change, and no library
    noise (transformers load reports and progress bars, warnings)."""
    import os
    import subprocess
    import sys

    plane = model_plane(tmp_path, records=120, max_steps=3)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(plane.settings.model_dump(mode="json", exclude={"workloads"})))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLYWHEEL")} | {"HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "orchestrator.cli.main", "--config", str(config), "jobs", "create",
                           "--workload", "news_topic", "--candidate", "tiny-clf", "--candidate", "tiny-lora",
                           "--set", "training.max_steps=3", "--wait"], capture_output=True, text=True, env=env,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stderr.splitlines()
    assert any("customize [tiny-clf]: completed" in line for line in lines), done.stderr
    assert any("decide: completed" in line for line in lines), done.stderr
    for noise in ("LOAD REPORT", "Loading weights", "Warning", "warn(", "FutureWarning", "DeprecationWarning"):
        assert not [line for line in lines if noise in line], f"{noise!r} on stderr:\n{done.stderr[-3000:]}"
    assert len(lines) == len(set(lines)), "every progress line is printed once"
