"""Gateway overhead and student vs teacher throughput, over real HTTP, in one run.

    python -m bench.gateway [--requests 400] [--concurrency 1 8 32] [--threads 1]

Three processes: a teacher stand-in (tests/gateway/fake_teacher.py: an OpenAI-compatible server
answering at once, so the gateway's own cost is what shows), the gateway (`create_gateway`, uvicorn,
logging every teacher call through the embedded SQLite queue as in the default set-up), and this
client (httpx.AsyncClient). For each concurrency the same chat requests go (a) straight to the
teacher stand-in — the baseline — and (b) through the gateway; the overhead is the difference of
the percentiles. Then the same workload's route is set to `full` on a MiniLM classifier student
(the newest `minilm-classifier` artifact under var/artifacts, e.g. from `make demo`; skipped if
none): requests/s and latency of the student answering, against the teacher path. Torch threads
are pinned in the gateway (`--threads`). Prints a table, writes bench/results/gateway.json.
Run on an otherwise idle machine: client and servers share the cores.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import machine, print_table, write_results
from services.domain.settings import default_models_dir

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve_teacher(port: int) -> None:
    import uvicorn

    from tests.gateway.fake_teacher import fake_teacher

    uvicorn.run(fake_teacher(), host="127.0.0.1", port=port, log_level="warning")


def _serve_gateway(port: int, settings_json: str, threads: int) -> None:
    import torch
    import uvicorn

    from services.deployment.gateway.app import create_gateway
    from services.domain.settings import Settings

    torch.set_num_threads(threads)
    uvicorn.run(create_gateway(Settings.model_validate_json(settings_json)), host="127.0.0.1", port=port,
                log_level="warning")


def _wait(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


async def _load(url: str, n: int, concurrency: int) -> tuple[list[float], float]:
    """n chat requests with `concurrency` in flight; (latencies in ms, wall seconds)."""
    body = {"model": "news_topic", "messages": [{"role": "user", "content": "Acme quarterly profit beats estimates"}]}
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        async def worker() -> None:
            while not queue.empty():
                queue.get_nowait()
                started = time.perf_counter()
                response = await client.post(url, json=body)
                response.raise_for_status()
                latencies.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return latencies, time.perf_counter() - started


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from services.deployment.routes import RouteStore
    from services.domain.artifacts import find_artifacts
    from services.domain.settings import Settings

    work = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    teacher_port, gateway_port = _free_port(), _free_port()
    settings = Settings.model_validate({
        "log_store": {"sqlite_path": str(work / "logs.sqlite")},
        "job_store": {"url": f"sqlite:///{work / 'jobs.sqlite'}"},
        "queue": {"embedded_dir": str(work / "queue")},
        "models": {"cache_dir": str(default_models_dir())},
        "teacher": {"model": "big-teacher", "base_url": f"http://127.0.0.1:{teacher_port}/v1"},
        "gateway": {"spool_path": str(work / "spool.jsonl")},
        "promotion": {"monitor_share": 0.0}, "tracking": {"enabled": False}})
    ctx = mp.get_context("spawn")
    teacher = ctx.Process(target=_serve_teacher, args=(teacher_port,), daemon=True)
    gateway = ctx.Process(target=_serve_gateway, args=(gateway_port, settings.model_dump_json(), args.threads),
                          daemon=True)
    teacher.start()
    gateway.start()
    rows: list[dict[str, Any]] = []
    try:
        _wait(f"http://127.0.0.1:{teacher_port}/docs")
        _wait(f"http://127.0.0.1:{gateway_port}/health")
        direct = f"http://127.0.0.1:{teacher_port}/v1/chat/completions"
        through = f"http://127.0.0.1:{gateway_port}/v1/chat/completions"
        asyncio.run(_load(through, 50, 4))  # warm-up: connections, first log batches
        for concurrency in args.concurrency:
            base, base_wall = asyncio.run(_load(direct, args.requests, concurrency))
            gw, gw_wall = asyncio.run(_load(through, args.requests, concurrency))
            rows.append({"path": "teacher via gateway", "concurrency": concurrency,
                         "direct_p50_ms": _pct(base, 0.5), "direct_p99_ms": _pct(base, 0.99),
                         "gateway_p50_ms": _pct(gw, 0.5), "gateway_p99_ms": _pct(gw, 0.99),
                         "overhead_p50_ms": _pct(gw, 0.5) - _pct(base, 0.5),
                         "overhead_p99_ms": _pct(gw, 0.99) - _pct(base, 0.99),
                         "direct_rps": args.requests / base_wall, "gateway_rps": args.requests / gw_wall})
        students = find_artifacts(REPO / "var" / "artifacts", candidate="minilm-classifier")
        if students:
            artifact = students[0]
            from services.deployment.routes import Route

            RouteStore(settings.job_store.url).set(Route(
                workload_id="news_topic", phase="full", candidate=artifact.candidate, artifact_id=artifact.artifact_id,
                artifact_path=artifact.path, student_kind=artifact.kind.value, base_model=artifact.base_model,
                canary_percent=100), action="deploy", detail={"reason": "bench"})
            time.sleep(1.5)  # the gateway's route cache
            asyncio.run(_load(through, 20, 1))  # load the student
            for concurrency in (1, 8):
                st, st_wall = asyncio.run(_load(through, args.requests // 2, concurrency))
                rows.append({"path": "student (MiniLM, local)", "concurrency": concurrency,
                             "gateway_p50_ms": _pct(st, 0.5), "gateway_p99_ms": _pct(st, 0.99),
                             "gateway_rps": (args.requests // 2) / st_wall})
        else:
            print("no minilm-classifier artifact under var/artifacts (run `make demo`): student rows skipped")
    finally:
        gateway.terminate()
        teacher.terminate()
    print_table(rows, ["path", "concurrency", "direct_p50_ms", "direct_p99_ms", "gateway_p50_ms", "gateway_p99_ms",
                       "overhead_p50_ms", "overhead_p99_ms", "direct_rps", "gateway_rps"])
    write_results("gateway", {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()},
                              "mean_of_medians_ms": statistics.fmean(r["gateway_p50_ms"] for r in rows),
                              "rows": rows}, args.json)


if __name__ == "__main__":
    main()
