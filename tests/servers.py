"""Real HTTP servers for tests: an ASGI app under uvicorn on a free localhost port, in a thread; the gateway as
its own process (`flywheel serve gateway`); and waiting for a job through the API."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Yield the base URL (http://127.0.0.1:PORT) while `app` is served."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def finished_job(client: Any, job_id: str, timeout: float = 600) -> dict[str, Any]:
    """`GET /api/jobs/{id}` once the job has finished and its deploy stage (if any) is no longer running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = client.get(f"/api/jobs/{job_id}").json()
        deploy = next((s for s in view["stages"] if s["name"] == "deploy"), None)
        if view["status"] in ("completed", "failed", "cancelled") and (deploy is None or deploy["status"] != "running"):
            return dict(view)
        time.sleep(0.25)
    raise AssertionError(f"job {job_id} did not finish: {view['status']}")


def wait_until(predicate: Any, timeout: float = 15.0, what: str = "the gateway's background work") -> None:
    """Poll `predicate` every 0.1 s until it holds; an AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def start_gateway_process(config: Path, timeout: float = 60) -> tuple[subprocess.Popen[str], str]:
    """`flywheel serve gateway --config CONFIG` as a user starts it (offline, no FLYWHEEL_* overrides), on a free
    port; returns once it answers /health: the process (stderr piped, text) and its base URL. The caller stops it."""
    import httpx

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLYWHEEL")} | {"HF_HUB_OFFLINE": "1"}
    gateway = subprocess.Popen([sys.executable, "-m", "orchestrator.cli.main", "--config", str(config), "serve",
                                "gateway", "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert gateway.poll() is None, "the gateway exited"
        try:
            return httpx.get(f"{base}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(healthy, timeout=timeout, what="the gateway to start")
    except AssertionError:
        gateway.kill()
        raise AssertionError(f"the gateway did not start: {gateway.communicate(timeout=10)[1][-2000:]}") from None
    return gateway, base
