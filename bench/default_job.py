"""The default job on the stand-in, as a new user runs it, turn after turn: how long, and does it take traffic
off the teacher?

    python -m bench.default_job [--turns 2000 3500] [--noise-focus 3] [--keep DIR]

In a fresh folder holding only a copy of the shipped config.yaml (models from the per-user cache): write
the stand-in logs (services/datastore/standin.py), `flywheel ingest` them, then
`flywheel jobs create --workload news_topic --wait --json` with every default. Each `--turns` value is the
number of records logged by then: turn 1 is a workload's first weeks (2,000 records), turn 2 the same
workload once 1,500 more requests were answered by the teacher (later in time, ingested into the same
store), when the flywheel turns again. Recorded per turn: wall time of the job, each stage's duration, the
machine's load average before and after and its cores, and the decision (chosen student, full or
selective, coverage and agreement bound, what was skipped and why). Prints a table; writes
bench/results/default_job.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import REPO, machine, print_table, write_results


def flywheel(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLYWHEEL")} | {"HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "orchestrator.cli.main", *args], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=3600)


def main() -> None:
    from services.datastore.convert import _write_jsonl
    from services.datastore.standin import simulated_teacher_logs

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, nargs="+", default=[2000, 3500],
                        help="Records logged by each turn's job (increasing; one value: a single turn).")
    parser.add_argument("--noise-focus", type=float, default=3.0)
    parser.add_argument("--keep", type=Path, default=None, help="Run in this folder and keep it (default: a temp dir).")
    parser.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                        help="Passed to `jobs create --set` (e.g. data_split.eval_size=400).")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    turns = sorted(set(args.turns))
    folder = args.keep or Path(tempfile.mkdtemp(prefix="flywheel-default-job-"))
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "config.yaml", folder / "config.yaml")
    source = REPO / "data" / "twitter_financial_news_topic"
    logs, _, standin = simulated_teacher_logs(source, records=turns[0], noise_focus=args.noise_focus)
    # Turn 1 is the stand-in of every other bench; later turns add the next records of a longer draw of the same
    # seed (its first records are the same headlines, so the later ones are new, and logged later in time).
    longer = simulated_teacher_logs(source, records=turns[-1], noise_focus=args.noise_focus)[0] if len(turns) > 1 else []
    assert [r["request"] for r in longer[:turns[0]]] == [r["request"] for r in logs] or not longer
    every = logs + longer[turns[0]:]
    summaries: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    logged = 0
    for turn, records in enumerate(turns, start=1):
        name = f"logs-{turn}.jsonl.gz"
        _write_jsonl(folder / name, every[logged:records])
        ingested = flywheel(folder, "ingest", name, "--json")
        if ingested.returncode != 0:
            raise SystemExit(f"ingest failed: {ingested.stderr[-2000:]}")
        logged = records
        result = run_job(folder, args.assignments)
        result["summary"] = {"turn": turn, "records": records, **result["summary"]}
        summaries.append(result["summary"])
        results.append(result)
        print(f"turn {turn} ({records} records):", file=sys.stderr)
        print_table([result["summary"]])
        print()
        print_table(result["stages"])
        print()
        print("decision:", result["decision"].get("reason"))
        for verdict in result["decision"].get("verdicts") or []:
            print(f"  {verdict['candidate']}: score {verdict.get('score')} (low {verdict.get('ci_low')}); "
                  f"{'; '.join(verdict.get('reasons') or []) or 'qualifies'}")
        stderr_lines = result["stderr"]
        print(f"\nstderr: {len(stderr_lines)} lines; last: {stderr_lines[-3:] if stderr_lines else []}\n")
    print("every turn:")
    print_table(summaries)
    write_results("default_job", {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()},
                                  "standin": standin, "summary": summaries[0], "turns": results,
                                  "folder": str(folder)}, args.json)
    if args.keep is None:
        shutil.rmtree(folder, ignore_errors=True)


def run_job(folder: Path, assignments: list[str]) -> dict[str, Any]:
    """One `jobs create --wait` with the defaults: its summary, stages, decision and stderr."""
    load_before = os.getloadavg()
    started = time.perf_counter()
    done = flywheel(folder, "jobs", "create", "--workload", "news_topic", "--wait", "--json",
                    *[arg for assignment in assignments for arg in ("--set", assignment)])
    wall = time.perf_counter() - started
    load_after = os.getloadavg()
    view = json.loads(done.stdout) if done.stdout.strip().startswith("{") else {"status": "error", "stderr": done.stderr}
    decision = view.get("decision") or {}
    stages = [{"stage": s["name"], "candidate": s.get("candidate"), "status": s["status"],
               "seconds": _seconds(s.get("started_at"), s.get("finished_at"))} for s in view.get("stages") or []]
    cascade = decision.get("cascade") or {}
    summary = {"status": view.get("status"), "wall_s": round(wall, 1), "chosen": decision.get("chosen"),
               "mode": decision.get("mode"), "coverage": cascade.get("coverage"),
               "agreement": cascade.get("agreement"), "agreement_low": cascade.get("agreement_ci_low"),
               "skipped": "; ".join(f"{k}: {v}" for k, v in (decision.get("skipped") or {}).items()) or None,
               "load_before": round(load_before[0], 2), "load_after": round(load_after[0], 2), "cores": os.cpu_count()}
    return {"summary": summary, "stages": stages, "decision": decision, "stderr": done.stderr.splitlines()[-200:]}


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds(), 1)


if __name__ == "__main__":
    main()
