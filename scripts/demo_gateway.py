"""The demo's last act: requests through the gateway with the official `openai` client, then a summary.

Sends held-out headlines (the dataset's eval split: never trained on) to the gateway, exactly as
the teacher's clients would, shows the first answer and who served it, times the round trips, and
prints the job's numbers next to what the gateway did. Run by scripts/demo.sh; usable alone:

    .venv/bin/python scripts/demo_gateway.py --job JOB_ID --gateway http://127.0.0.1:8001/v1 \
        --teacher http://127.0.0.1:8002/v1
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from openai import NotFoundError, OpenAI

from orchestrator.jobs.store import JobStore
from orchestrator.jobs.view import job_view
from services.deployment.routes import RouteStore
from services.domain.datasets import datasets_root, load_dataset
from services.domain.labels import LabelParser
from services.domain.records import content_text
from services.domain.settings import load_settings


def timed(client: OpenAI, messages: list[dict[str, Any]], model: str) -> tuple[str, str, float]:
    started = time.perf_counter()
    raw = client.chat.completions.with_raw_response.create(model=model, messages=messages, max_tokens=16)
    elapsed = (time.perf_counter() - started) * 1000
    return raw.parse().choices[0].message.content or "", raw.headers.get("x-flywheel-served-by", "?"), elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--job", required=True, help="The job whose student was promoted.")
    parser.add_argument("--gateway", required=True, help="The gateway's OpenAI base URL (…/v1).")
    parser.add_argument("--teacher", required=True, help="The teacher stand-in's OpenAI base URL (…/v1).")
    parser.add_argument("--requests", type=int, default=50, help="Held-out requests to send.")
    parser.add_argument("--dashboard", default="http://127.0.0.1:8000/dashboard")
    args = parser.parse_args()

    settings = load_settings()
    store = JobStore(settings.job_store.url)
    view = job_view(store.get_job(args.job))
    workload = view["workload_id"]
    route = RouteStore(settings.job_store.url).get(workload, fresh=True)
    dataset = load_dataset(datasets_root(settings.artifacts.root), view["dataset_id"])
    held_out = [r for _, r in zip(range(args.requests), dataset.read_split("eval"), strict=False)]
    labels = LabelParser(settings.workload(workload).label_pattern)

    gateway = OpenAI(base_url=args.gateway, api_key="demo", max_retries=0)
    teacher = OpenAI(base_url=args.teacher, api_key="demo", max_retries=0)
    first = held_out[0]["request"]["messages"]
    answer, served_by, _ = timed(gateway, first, workload)
    print(f"\n  request (user turn): {content_text(first[-1]['content'])!r}")
    print(f"  answer:              {answer!r}   (X-Flywheel-Served-By: {served_by}, route phase {route.phase})")

    student_ms, teacher_ms, served, agree = [], [], {"student": 0, "teacher": 0}, 0
    for record in held_out:
        messages = record["request"]["messages"]
        text, who, ms = timed(gateway, messages, workload)
        served[who] = served.get(who, 0) + 1
        student_ms.append(ms)
        try:
            teacher_ms.append(timed(teacher, messages, "teacher")[2])
        except NotFoundError:  # the dataset redacted this request (PII): the replay holds only the original
            pass
        expected = content_text(record["response"]["choices"][0]["message"]["content"])
        agree += labels.parse(text) == labels.parse(expected)

    decision = view.get("decision") or {}
    chosen = next((c for c in view["candidates"] if c["name"] == decision.get("chosen")), None)
    customized = (chosen or {}).get("evaluations", {}).get("customized") or {}
    ci = customized.get("f1_vs_teacher_ci") or [None, None]
    latency = customized.get("latency") or {}
    rows = [
        ("job", f"{view['id']} ({view['status']})"),
        ("dataset", f"{view['dataset_id'][:12]}  {view['dataset']['counts']}"),
        ("promoted student", f"{decision.get('chosen')} (rollout {(decision.get('policy') or {}).get('rollout')}, "
                             f"policy min_score {(decision.get('policy') or {}).get('min_score')})"
         if decision.get("chosen") else f"none: {decision.get('reason')}"),
        ("F1 relative to teacher", f"{customized.get('f1_vs_teacher', float('nan')):.3f}  95% CI "
                                   f"[{ci[0]:.3f}, {ci[1]:.3f}] on {customized.get('n')} held-out requests"
         if ci[0] is not None else "n/a"),
        ("student latency (eval)", f"p50 {latency.get('p50_ms', float('nan')):.1f} ms, "
                                   f"p95 {latency.get('p95_ms', float('nan')):.1f} ms per request, in-process"),
        ("gateway round trip", f"student p50 {statistics.median(student_ms):.1f} ms vs replayed teacher p50 "
                               + (f"{statistics.median(teacher_ms):.1f} ms" if teacher_ms else "n/a")
                               + " (the replay is a lookup: a 70B LLM takes far longer)"),
        ("live agreement", f"{agree}/{len(held_out)} gateway answers match the teacher's label"),
        ("served by", ", ".join(f"{k} {v}" for k, v in served.items())),
        ("cost per 1k requests", f"teacher {decision.get('teacher_cost_per_1k_requests')} -> student "
                                 f"{decision.get('chosen_cost_per_1k_requests')} USD (pricing in config.yaml"
                                 + ("; teacher tokens estimated from the text: the demo logs carry no usage)"
                                    if decision.get("teacher_cost_estimated") else ")")),
        ("route", f"{route.phase} -> {route.candidate} (artifact {str(route.artifact_id)[:12]})"),
        ("dashboard", f"{args.dashboard}  (run: .venv/bin/flywheel serve api)"),
    ]
    width = max(len(k) for k, _ in rows)
    print("\n  " + "-" * 100)
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")
    print("  " + "-" * 100)


if __name__ == "__main__":
    main()
