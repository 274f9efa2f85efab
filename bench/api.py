"""Orchestrator API latency: job status reads and job creation through a real uvicorn server, with the
worker idle and with it training, against GET /api/health (the HTTP stack's floor) in the same run.

    python -m bench.api [--reads 200] [--creates 50] [--health 200] [--threads 1] [--busy-steps 1000000]

The server runs in a child process the way `flywheel serve api` runs on the embedded queue: uvicorn
on a free loopback port, the app with an in-process worker (threads, every queue) over a tiny model
plane (tests/model_plane.py: tiny local models, SQLite log and job stores, SQLite broker). This
process is the client: httpx, one keep-alive connection, one request at a time, the request kinds
interleaved in a seeded order so drift in machine load hits them alike. Two phases, each on a fresh
server (a created job leaves ~6 tasks on the queue, and the busy job must not wait behind them):
1. idle: the worker has nothing to do but the no-op tasks of the jobs the timed POSTs create, each
   cancelled at once (untimed) so it never starts work.
2. busy: one job trains every busy candidate (tiny LoRA LM + tiny classifier, one worker thread each)
   for `--busy-steps` steps, which it never reaches inside the run: the worker keeps the CPU loaded
   while the same requests are timed. It is cancelled at the end.
The read target is the same cancelled job (same stage rows as the busy one) in both phases. Per phase
and request: p50, p99, mean latency and p50 over the health floor. The server process's CPU use,
during the phase (server_cpu_pct) and for 2 s before it with no request (worker_only_cpu_pct), and
the training steps done during the busy phase show how loaded it was. Prints a table, writes
bench/results/api.json. Run on an otherwise idle machine (docs/model-plane.md: thread contention).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import random
import socket
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.common import machine, print_table, write_results

WORKLOAD = "news_topic"
BUSY_CANDIDATES = ["tiny-lora", "tiny-clf"]
FINISHED = ("completed", "failed", "cancelled")


def _serve(root: str, threads: int, ready: mp.Queue) -> None:
    """The server child: model plane, in-process worker, uvicorn on a loopback port it reports back."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers' deprecation notes, not the bench's
    import torch

    torch.set_num_threads(threads)
    import uvicorn
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    from orchestrator.api.app import create_app
    from orchestrator.jobs.store import JobStore
    from orchestrator.pipeline.embedded import embedded_worker
    from tests.model_plane import model_plane

    settings = model_plane(Path(root), records=120).settings
    # The tests poll the broker every 50 ms to finish fast; a server uses config.yaml's 100 ms.
    settings = settings.model_copy(update={"queue": settings.queue.model_copy(update={"polling_interval_s": 0.1})})
    store = JobStore(settings.job_store.url)
    # A free port, held from here on (no race with another process). IPPROTO_TCP, not the default 0:
    # asyncio sets TCP_NODELAY only on sockets that say they are TCP, and without it every response
    # waits ~40 ms for the client's delayed ACK (Nagle). uvicorn binding host and port itself is fine.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    with embedded_worker(settings, store) as worker_app:
        app = create_app(settings, store=store, celery_app=worker_app)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        ready.put(sock.getsockname()[1])
        server.run(sockets=[sock])  # until SIGTERM
    store.close()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), to report how loaded the server was."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _background_cpu(pid: int, seconds: float = 2.0) -> float:
    """The server's CPU use (%) while no request is sent: what the worker alone costs."""
    before, started = _cpu_seconds(pid), time.perf_counter()
    time.sleep(seconds)
    return (_cpu_seconds(pid) - before) / (time.perf_counter() - started) * 100


def _cpu_model() -> str | None:
    """The CPU's model name (bench.common.machine() reports only the architecture here)."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), None)


def _percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile, a value that was measured (p99 of 50 samples is their maximum)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def _create(client: httpx.Client, overrides: dict[str, Any]) -> str:
    response = client.post("/api/jobs", json={"workload_id": WORKLOAD, "overrides": overrides})
    response.raise_for_status()
    return str(response.json()["id"])


def _wait(client: httpx.Client, job_id: str, until: Any, timeout: float, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = client.get(f"/api/jobs/{job_id}").json()
        if until(view):
            return view
        time.sleep(0.2)
    raise RuntimeError(f"job {job_id}: {what} not reached in {timeout:.0f} s: {view}")


def _training_steps(view: dict[str, Any]) -> int:
    return sum(int(((c.get("training") or {}).get("live") or {}).get("step") or 0) for c in view["candidates"])


def _phase(client: httpx.Client, *, name: str, read_id: str, counts: dict[str, int], seed: int,
           server_pid: int) -> tuple[dict[str, list[float]], float]:
    """Time the interleaved requests of one phase; the server's CPU use (%) over the phase."""
    schedule = [kind for kind, n in counts.items() for _ in range(n)]
    random.Random(seed).shuffle(schedule)
    create_body = {"workload_id": WORKLOAD, "overrides": {"candidates": ["tiny-clf"]}}
    for _ in range(5):  # warm-up: connection, first-call imports, SQLite page cache
        client.get("/api/health")
        client.get(f"/api/jobs/{read_id}")
    samples: dict[str, list[float]] = {kind: [] for kind in counts}
    cpu_before, wall_before = _cpu_seconds(server_pid), time.perf_counter()
    for kind in schedule:
        started = time.perf_counter()
        if kind == "health":
            response = client.get("/api/health")
        elif kind == "read":
            response = client.get(f"/api/jobs/{read_id}")
        else:
            response = client.post("/api/jobs", json=create_body)
        elapsed = time.perf_counter() - started
        if response.status_code >= 300:
            raise RuntimeError(f"{name}: {kind} returned {response.status_code}: {response.text[:300]}")
        samples[kind].append(elapsed)
        if kind == "create":  # untimed: a created job must not start work (idle) nor add to it (busy)
            client.post(f"/api/jobs/{response.json()['id']}/cancel").raise_for_status()
    cpu = (_cpu_seconds(server_pid) - cpu_before) / (time.perf_counter() - wall_before) * 100
    return samples, cpu


def _wait_up(client: httpx.Client, timeout: float = 60) -> None:
    """uvicorn listens a moment after the child reports its port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if client.get("/api/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the API server did not come up")


@contextmanager
def _server(threads: int) -> Iterator[tuple[httpx.Client, int]]:
    """A fresh server child (own model plane, stores and broker); a client for it and its pid."""
    ctx = mp.get_context("spawn")
    ready: mp.Queue = ctx.Queue()
    with tempfile.TemporaryDirectory() as tmp:
        server = ctx.Process(target=_serve, args=(tmp, threads, ready), daemon=True)
        server.start()
        try:
            port = ready.get(timeout=180)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
                _wait_up(client)
                assert server.pid is not None
                yield client, server.pid
        finally:
            server.terminate()  # SIGTERM: uvicorn shuts down, then the worker
            server.join(timeout=90)
            if server.is_alive():
                server.kill()


def _idle(args: argparse.Namespace, counts: dict[str, int]) -> dict[str, Any]:
    with _server(args.threads) as (client, pid):
        read_id = _create(client, {"candidates": BUSY_CANDIDATES})
        client.post(f"/api/jobs/{read_id}/cancel").raise_for_status()
        background = _background_cpu(pid)
        samples, cpu = _phase(client, name="idle", read_id=read_id, counts=counts, seed=args.seed, server_pid=pid)
    return {"samples": samples, "cpu": cpu, "background": background}


def _busy(args: argparse.Namespace, counts: dict[str, int]) -> dict[str, Any]:
    overrides = {"candidates": BUSY_CANDIDATES, "training": {
        "max_steps": args.busy_steps, "early_stopping_patience": 0, "checkpoint_every_steps": 200}}

    def trainings(view: dict[str, Any]) -> list[str]:
        return [(c.get("training") or {}).get("status", "") for c in view["candidates"]]

    with _server(args.threads) as (client, pid):
        read_id = _create(client, {"candidates": BUSY_CANDIDATES})
        client.post(f"/api/jobs/{read_id}/cancel").raise_for_status()
        busy_id = _create(client, overrides)
        view = _wait(client, busy_id, lambda v: set(trainings(v)) == {"running"} or v["status"] in FINISHED,
                     180, "training running")
        if view["status"] in FINISHED:
            raise RuntimeError(f"the busy job ended before training: {view['status']} {view['error']}")
        background = _background_cpu(pid)
        steps_before, started = _training_steps(view), time.perf_counter()
        samples, cpu = _phase(client, name="busy", read_id=read_id, counts=counts, seed=args.seed + 1, server_pid=pid)
        view = client.get(f"/api/jobs/{busy_id}").json()
        seconds = time.perf_counter() - started
        if set(trainings(view)) != {"running"}:
            raise RuntimeError(f"the busy trainings stopped during the phase: {trainings(view)} {view['error']}")
        steps = _training_steps(view) - steps_before
        # Training stops between steps; the job's other tasks stay queued behind the timed jobs' (they
        # die with the server), so wait for the trainings, not for the job, to finish.
        client.post(f"/api/jobs/{busy_id}/cancel").raise_for_status()
        _wait(client, busy_id, lambda v: all(s in FINISHED for s in trainings(v)), 60, "trainings stopped")
    return {"samples": samples, "cpu": cpu, "background": background, "steps": steps, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reads", type=int, default=200, help="Timed GET /api/jobs/{id} per phase.")
    parser.add_argument("--creates", type=int, default=50, help="Timed POST /api/jobs per phase.")
    parser.add_argument("--health", type=int, default=200, help="Timed GET /api/health per phase (the baseline).")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch.set_num_threads in the server: 2 training threads x 1 = this machine's 2 cores.")
    parser.add_argument("--busy-steps", type=int, default=1_000_000,
                        help="max_steps of the busy job's trainings (large: they must outlast the phase).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the request order.")
    parser.add_argument("--json", type=Path, default=None, help="Results path (default bench/results/api.json).")
    args = parser.parse_args()
    counts = {"health": args.health, "read": args.reads, "create": args.creates}
    load_before = os.getloadavg()
    phases = {"idle": _idle(args, counts), "busy": _busy(args, counts)}

    rows = []
    for phase, result in phases.items():
        samples = result["samples"]
        floor = _percentile(samples["health"], 50)
        for kind, label in (("health", "GET /api/health"), ("read", "GET /api/jobs/{id}"), ("create", "POST /api/jobs")):
            values = samples[kind]
            rows.append({"phase": phase, "request": label, "n": len(values),
                         "p50_ms": round(_percentile(values, 50) * 1000, 2),
                         "p99_ms": round(_percentile(values, 99) * 1000, 2),
                         "mean_ms": round(sum(values) / len(values) * 1000, 2),
                         "p50_over_health_ms": round((_percentile(values, 50) - floor) * 1000, 2),
                         "server_cpu_pct": round(result["cpu"]), "worker_only_cpu_pct": round(result["background"])})
    print_table(rows)
    busy = phases["busy"]
    print(f"busy phase: {busy['steps']} training steps in {busy['seconds']:.1f} s across {len(BUSY_CANDIDATES)} "
          f"candidates ({busy['steps'] / busy['seconds']:.1f} steps/s); load average before the run: {load_before[0]:.2f}")
    write_results("api", {"machine": {**machine(), "cpu_model": _cpu_model()}, "args": {**vars(args), "json": str(args.json) if args.json else None},
                          "load_average_before": load_before, "busy": {
                              "candidates": BUSY_CANDIDATES, "training_steps": busy["steps"],
                              "seconds": round(busy["seconds"], 2)}, "rows": rows}, args.json)


if __name__ == "__main__":
    main()
