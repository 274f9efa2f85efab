"""Training and serving speed when the machine is shared: the thread policy against torch's defaults.

    python -m bench.contention [--examples 320] [--requests 200]

Arms, each in fresh processes (environment set before torch loads):
- `policy`: what the platform does (services/models/runtime/threads.py): OpenMP waits passively, a
  training takes the cores not already busy and claims them (two started at once share the cores,
  rebalanced between steps), a served request runs on one thread;
- `default`: torch's defaults (as many threads as cores, OpenMP's own wait policy), as the platform ran
  before its thread policy.
Measured per arm: MiniLM classifier fine-tuning examples/s alone and with a second identical training
beside it (two processes at once), and the p50/p95 latency of answering one headline at a time with a
trained-size MiniLM classifier alone and beside a training. Prints a table; writes
bench/results/contention.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from bench.common import REPO, machine, print_table, write_results

CHILD = r"""
import contextlib, json, os, sys, time, random
mode, kind, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
import torch
from transformers import AutoModel, AutoTokenizer
from services.domain.settings import default_models_dir
from services.models.students.encoder_classifier.runtime import MeanPoolClassifier
from services.models.runtime.threads import rebalance, torch_threads
path = str(default_models_dir() / "minilm-l6")
# policy: the platform's own context (thread claims: two trainings starting at once share the cores)
threads = torch_threads("train" if kind == "train" else "serve") if mode == "policy" else contextlib.nullcontext()
texts = [l.split(",", 1)[1].strip() for l in open(sys.argv[4], encoding="utf-8").read().splitlines()[1:n + 1]]
tok = AutoTokenizer.from_pretrained(path)
model = MeanPoolClassifier(AutoModel.from_pretrained(path), 20)
with threads:
    if kind == "train":
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        started = time.perf_counter()
        for i in range(0, len(texts), 16):
            batch = tok(texts[i:i + 16], padding=True, truncation=True, max_length=64, return_tensors="pt")
            loss = torch.nn.functional.cross_entropy(model(batch["input_ids"], batch["attention_mask"]),
                                                     torch.randint(0, 20, (len(texts[i:i + 16]),)))
            loss.backward(); opt.step(); opt.zero_grad()
            if mode == "policy":
                rebalance()
        print(json.dumps({"examples_per_s": len(texts) / (time.perf_counter() - started),
                          "threads": torch.get_num_threads()}))
    else:
        model.eval(); seconds = []
        with torch.inference_mode():
            for text in texts:
                started = time.perf_counter()
                batch = tok([text], truncation=True, max_length=64, return_tensors="pt")
                model(batch["input_ids"], batch["attention_mask"])
                seconds.append(time.perf_counter() - started)
        seconds.sort()
        print(json.dumps({"p50_ms": 1000 * seconds[len(seconds) // 2],
                          "p95_ms": 1000 * seconds[int(len(seconds) * 0.95)], "threads": torch.get_num_threads()}))
"""


def _env(mode: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    env["PYTHONPATH"] = str(REPO)
    if mode == "policy":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    return env


def _start(mode: str, kind: str, n: int, data: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", CHILD, mode, kind, str(n), data], env=_env(mode),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def _result(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"bench child failed with exit code {proc.returncode}")
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=320)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    data = str(REPO / "data" / "twitter_financial_news_topic" / "topic_train.csv")
    rows = []
    for mode in ("default", "policy"):
        alone = _result(_start(mode, "train", args.examples, data))
        time.sleep(2)
        pair = [_start(mode, "train", args.examples, data), _start(mode, "train", args.examples, data)]
        beside = [_result(p) for p in pair]
        time.sleep(2)
        served_alone = _result(_start(mode, "serve", args.requests, data))
        trainer = _start(mode, "train", args.examples * 4, data)
        time.sleep(8)  # the training is under way
        served_beside = _result(_start(mode, "serve", args.requests, data))
        _result(trainer)
        rows.append({"arm": mode, "train ex/s alone": round(alone["examples_per_s"], 1),
                     "train ex/s, 2 at once (each)": round(statistics.mean(b["examples_per_s"] for b in beside), 1),
                     "threads (alone / pair, at the end)": f"{alone['threads']} / {beside[0]['threads']},{beside[1]['threads']}",
                     "serve p50 ms alone": round(served_alone["p50_ms"], 1),
                     "serve p50 ms beside training": round(served_beside["p50_ms"], 1),
                     "serve p95 ms beside training": round(served_beside["p95_ms"], 1)})
        print(rows[-1], flush=True)
        time.sleep(2)
    print()
    print_table(rows)
    write_results("contention", {"machine": machine(), "args": vars(args), "load_before": os.getloadavg(),
                                 "rows": rows})


if __name__ == "__main__":
    main()
