"""The processes the gateway bench measures: the teacher stand-in, our gateway, our gateway as it was
at a baseline commit, and the peers (LiteLLM proxy, Portkey's gateway), each installed here on first
use into a cache folder (never into the project's venv) and pointed at the stand-in.

Every server is its own OS process with its output in a log file; a server that cannot be installed
or started raises `Unavailable` with the reason, so the bench reports it and measures the rest.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.gateway_client import Target

REPO = Path(__file__).resolve().parents[1]
TEACHER_MODEL = "big-teacher"

# Runs in a fresh interpreter whose `services` package comes from argv[1] (this checkout or a baseline
# export), so the same lines start today's gateway and the one before the restructure.
SERVE_GATEWAY = """
import sys
from pathlib import Path

root, port, settings_file = Path(sys.argv[1]).resolve(), int(sys.argv[2]), Path(sys.argv[3])
import services
if not Path(services.__file__).resolve().is_relative_to(root):
    sys.exit(f"services was imported from {services.__file__}, not from {root}")
import uvicorn
from services.domain.settings import Settings
settings = Settings.model_validate_json(settings_file.read_text())
try:  # today's gateway is served as `flywheel serve gateway` serves it
    from services.deployment.gateway.app import run_gateway
    run_gateway(settings, host="127.0.0.1", port=port)
except ImportError:  # a baseline from before run_gateway
    try:
        from services.deployment.gateway import create_gateway
    except ImportError:
        from services.deployment.gateway.app import create_gateway
    uvicorn.run(create_gateway(settings), host="127.0.0.1", port=port, log_level="warning")
"""

SERVE_TEACHER = """
import sys
import uvicorn
from tests.gateway.fake_teacher import fake_teacher
uvicorn.run(fake_teacher(), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


class Unavailable(Exception):
    """A server that could not be installed or started; the message says why."""


@dataclass
class Server:
    """A running server process and how the bench reaches it."""

    target: Target
    process: subprocess.Popen[bytes]
    log: Path
    info: dict[str, Any] = field(default_factory=dict)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _launch(name: str, command: list[str], work: Path, *, health: str, port: int, cwd: Path = REPO,
            env: dict[str, str] | None = None, timeout_s: float = 180, **target: Any) -> Server:
    """Start `command`, wait until GET `health` answers below 500; Unavailable if it exits or times out."""
    log = work / f"{name}.log"
    handle = log.open("wb")
    process = subprocess.Popen(command, cwd=cwd, env={**os.environ, **(env or {})}, stdout=handle,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    handle.close()
    server = Server(Target(name, f"http://127.0.0.1:{port}", **target), process, log)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise Unavailable(f"{name} exited with {process.returncode}: {_tail(log)}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{health}", timeout=2) as response:
                if response.status < 500:
                    return server
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return server
        except OSError:
            pass
        time.sleep(0.25)
    server.stop()
    raise Unavailable(f"{name} did not come up in {timeout_s:.0f} s: {_tail(log)}")


def _tail(log: Path, chars: int = 400) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    return " ".join(text[-chars:].split()) or "(no output)"


def start_teacher(work: Path) -> Server:
    """The OpenAI-compatible stand-in (tests/gateway/fake_teacher.py) answering at once."""
    port = free_port()
    return _launch("direct", [sys.executable, "-c", SERVE_TEACHER, str(port)], work, health="/docs", port=port)


def gateway_settings(work: Path, teacher: Server) -> dict[str, Any]:
    """The embedded default (SQLite log store, SQLite queue) with every file under `work`."""
    from services.domain.settings import default_models_dir

    return {"log_store": {"sqlite_path": str(work / "logs.sqlite")},
            "job_store": {"url": f"sqlite:///{work / 'jobs.sqlite'}"},
            "queue": {"embedded_dir": str(work / "queue"), "polling_interval_s": 0.05},
            "models": {"cache_dir": str(default_models_dir())},
            "teacher": {"model": TEACHER_MODEL, "base_url": f"{teacher.target.base_url}/v1"},
            "gateway": {"spool_path": str(work / "spool.jsonl")},
            "promotion": {"monitor_share": 0.0}, "tracking": {"enabled": False}}


def start_gateway(name: str, work: Path, settings: dict[str, Any], *, root: Path = REPO) -> Server:
    """`create_gateway` from the `services` package under `root`, in its own uvicorn process."""
    work.mkdir(parents=True, exist_ok=True)
    settings_file = work / "settings.json"
    settings_file.write_text(json.dumps(settings))
    port = free_port()
    return _launch(name, [sys.executable, "-c", SERVE_GATEWAY, str(root), str(port), str(settings_file)], work,
                   health="/health", port=port, cwd=root, env={"PYTHONPATH": str(root)})


def export_baseline(ref: str, peers: Path) -> tuple[str, Path]:
    """(full sha, folder) of `ref` exported with `git archive` into the cache (once per sha)."""
    found = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", f"{ref}^{{commit}}"],
                           capture_output=True, text=True)
    if found.returncode != 0:
        raise Unavailable(f"baseline ref {ref!r} is not a commit here: {found.stderr.strip()}")
    sha = found.stdout.strip()
    folder = peers / f"baseline-{sha[:12]}"
    if not (folder / ".exported").exists():
        archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", sha], capture_output=True)
        if archive.returncode != 0:
            raise Unavailable(f"git archive {sha} failed: {archive.stderr.decode(errors='replace').strip()}")
        folder.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(folder, filter="data")
        (folder / ".exported").write_text(sha)
    return sha, folder


def _run_install(what: str, command: list[str], *, cwd: Path | None = None, timeout_s: float = 1200) -> None:
    print(f"installing {what} (once, into the bench's peer cache): {' '.join(command)}", flush=True)
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"installing {what} failed: {exc}") from None
    if done.returncode != 0:
        raise Unavailable(f"installing {what} failed: {' '.join((done.stderr or done.stdout)[-400:].split())}")


def start_litellm(work: Path, teacher: Server, peers: Path, *, spec: str, model: str) -> Server:
    """The LiteLLM proxy in its own venv under `peers`, forwarding `model` to the stand-in."""
    home = peers / "litellm"
    python, cli = home / "venv" / "bin" / "python", home / "venv" / "bin" / "litellm"
    stamp = home / "installed.txt"
    if not stamp.exists() or stamp.read_text() != spec or not cli.exists():
        home.mkdir(parents=True, exist_ok=True)
        _run_install("LiteLLM (venv)", [sys.executable, "-m", "venv", "--clear", str(home / "venv")])
        _run_install("LiteLLM", [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", spec])
        stamp.write_text(spec)
    version = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
                             capture_output=True, text=True).stdout.strip()
    config = work / "litellm.yaml"
    config.write_text(json.dumps({  # JSON is YAML
        "model_list": [{"model_name": model, "litellm_params": {
            "model": f"openai/{TEACHER_MODEL}", "api_base": f"{teacher.target.base_url}/v1", "api_key": "unused"}}],
        "litellm_settings": {"telemetry": False}}))
    port = free_port()
    # A master key, as LiteLLM requires; the cost map read from the package (no network here); no telemetry.
    key = f"sk-bench-{secrets.token_hex(16)}"
    env = {"LITELLM_MASTER_KEY": key, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False",
           "LITELLM_LOG": "ERROR", "NO_DOCS": "True"}
    server = _launch("litellm", [str(cli), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
                                 "--num_workers", "1"], work, health="/health/liveliness", port=port, env=env,
                     headers={"Authorization": f"Bearer {key}"})
    server.info["version"] = version
    return server


def start_portkey(work: Path, teacher: Server, peers: Path, *, spec: str) -> Server:
    """Portkey's open-source gateway (npm) under node, sent to the stand-in as a custom OpenAI host."""
    home = peers / "portkey"
    package = home / "node_modules" / "@portkey-ai" / "gateway"
    stamp = home / "installed.txt"
    if not stamp.exists() or stamp.read_text() != spec or not (package / "package.json").exists():
        home.mkdir(parents=True, exist_ok=True)
        _run_install("Portkey gateway", ["npm", "install", "--prefix", str(home), "--no-audit", "--no-fund",
                                         "--omit=dev", "--silent", spec])
        stamp.write_text(spec)
    meta = json.loads((package / "package.json").read_text())
    entry = package / str(meta.get("bin", "build/start-server.js") if isinstance(meta.get("bin"), str)
                          else next(iter(meta.get("bin", {"": "build/start-server.js"}).values())))
    port = free_port()
    # Portkey's headers for an OpenAI-compatible upstream at a custom URL (its "custom host").
    headers = {"x-portkey-provider": "openai", "x-portkey-custom-host": f"{teacher.target.base_url}/v1",
               "Authorization": "Bearer unused"}
    server = _launch("portkey", ["node", str(entry), f"--port={port}", "--headless"], work, health="/", port=port,
                     cwd=home, headers=headers)
    server.info["version"] = meta.get("version")
    return server
