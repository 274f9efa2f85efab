"""Token efficiency: the same SmolLM2 LoRA student trained and served with and without the teacher's
static prompt, in one run.

    python -m bench.pruning [--limit 1500] [--steps 8] [--batch-size 4] [--eval-size 100] [--threads 2]

Teacher logs are the Twitter Financial News Topic set (MIT, in the repo) sent with a long static
system prompt that defines all 20 classes with two example headlines each (from the set's
validation file), as the seed's teacher prompt does: ~1,200 tokens of prompt for a ~25-token
headline. One dataset is built by the real pipeline (which records the static prompt in its
manifest); then two arms, identical but for `prune_static_prompt` (off | on), each train for
exactly `--steps` steps on the same data and are evaluated on the same held-out split as they are
served (the pruned arm's requests with the static prompt replaced by the task tag, label answers
by constrained scoring). On CPU a ~1,200-token example costs seconds, so the arms are capped at a
fixed, small number of steps, labelled in the table: their F1 is that of a barely trained
student; the speed and token columns are the point. Prints a table; writes bench/results/pruning.json.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import REPO, machine, print_table, run_in_child, settings_base, write_results

FOLDER = REPO / "data" / "twitter_financial_news_topic"
ACCUMULATION = 4  # gradient accumulation steps per optimizer step
def long_system_prompt(labels: list[str], *, per_class: int = 2, seed: int = 0) -> str:
    """Every class defined with `per_class` example headlines from the validation file (never trained on)."""
    from services.datastore.standin import long_system_prompt as shared

    return shared(FOLDER, per_class=per_class, seed=seed)


def build(root: Path, limit: int, eval_size: int) -> tuple[str, dict[str, Any]]:
    from services.datastore import convert
    from services.datastore.datasets import build_dataset
    from services.datastore.stores.sqlite import SqliteLogStore
    from services.domain.records import LogRecord

    labels, examples = convert.read_twitter_topic(FOLDER, "train")
    system = long_system_prompt(labels)
    items = list(examples)
    random.Random(0).shuffle(items)
    logs = [convert.to_log_record(e, system_prompt=system, workload_id="twitter_topic", client_id="bench",
                                  timestamp=1_700_000_000 + i) for i, e in enumerate(items[:limit])]
    settings = _settings(root, eval_size=eval_size)
    with SqliteLogStore(root / "logs.sqlite") as store:
        store.write([LogRecord.model_validate(r) for r in logs])
        ref = build_dataset(store, settings, workload_id="twitter_topic", client_id=None,
                            root=root / "artifacts" / "datasets")
    return ref.dataset_id, ref.manifest["static_prompt"]


def _settings(root: Path, *, eval_size: int = 100, prune: str = "auto", training: dict[str, Any] | None = None) -> Any:
    from services.domain.settings import Settings

    base = settings_base(root, eval_size=eval_size)
    base["training"].update({"max_seq_length": 2048, "early_stopping_patience": 0, "checkpoint_every_steps": 1000,
                             "max_val_examples": 16})
    for candidate in base["candidates"]:
        if candidate["name"] == "smollm2-lora":
            candidate["prune_static_prompt"] = prune
            candidate["training"] = {**{k: v for k, v in candidate["training"].items() if v is not None}, **(training or {})}
    return Settings.model_validate(base)


def arm(root: str, dataset_id: str, prune: str, steps: int, batch_size: int, threads: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    from services.customizer.service import train_candidate
    from services.domain.evaluation import EvalKind
    from services.evaluator.runner import evaluate

    settings = _settings(Path(root), prune=prune, training={"max_steps": steps, "batch_size": batch_size,
                                                            "gradient_accumulation_steps": ACCUMULATION,
                                                            "eval_every_steps": steps})
    started = time.perf_counter()
    artifact = train_candidate(settings, "smollm2-lora", dataset_id)
    metrics = artifact.metrics
    result = evaluate(settings, candidate="smollm2-lora", dataset_id=dataset_id, kind=EvalKind.CUSTOMIZED,
                      artifact=artifact)
    public = result.to_public()
    tokens = metrics.get("prompt_tokens_pruned_mean") if metrics.get("pruned") else None
    return {
        "arm": "pruned" if artifact.prompt_tag else "full prompt",
        "steps": metrics["steps"], "train_examples_seen": metrics["steps"] * batch_size * ACCUMULATION,
        "input_tokens_mean": metrics["mean_input_tokens"],
        "prompt_tokens_unpruned": metrics.get("prompt_tokens_unpruned_mean"), "prompt_tokens_pruned": tokens,
        "train_s": metrics["train_seconds"], "examples_per_s": metrics["examples_per_s"],
        "serve_p50_ms": result.latency.p50_ms if result.latency else None,
        "serve_p95_ms": result.latency.p95_ms if result.latency else None,
        "f1_vs_teacher": public["f1_vs_teacher"], "f1_vs_teacher_ci": public["f1_vs_teacher_ci"], "eval_n": result.n,
        "wall_s": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=1500, help="Teacher log records (from the train file).")
    parser.add_argument("--steps", type=int, default=8, help="Training steps per arm (the same for both).")
    parser.add_argument("--batch-size", type=int, default=1,
                        help="Per step (x 4 accumulation steps): a 1,600-token example at batch 4 needs > 24 GB on CPU.")
    parser.add_argument("--eval-size", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        dataset_id, static = build(Path(tmp), args.limit, args.eval_size)
        print(f"dataset {dataset_id[:12]}: static prompt of ~{static['tokens']} tokens ({static['token_counter']}) "
              f"on {static['share']:.0%} of records, variable part ~{static['variable_tokens_mean']}", flush=True)
        rows = []
        for prune in ("off", "on"):
            rows.append(run_in_child(arm, tmp, dataset_id, prune, args.steps, args.batch_size, args.threads))
            print(rows[-1], flush=True)
    full, pruned = rows
    ratios = {
        "input_tokens": round(full["input_tokens_mean"] / pruned["input_tokens_mean"], 1),
        "training_per_example": round(pruned["examples_per_s"] / full["examples_per_s"], 1),
        "serving_p50": round(full["serve_p50_ms"] / pruned["serve_p50_ms"], 1),
        "f1_difference": round(pruned["f1_vs_teacher"] - full["f1_vs_teacher"], 3),
        "pruned_f1_inside_full_ci": full["f1_vs_teacher_ci"][0] <= pruned["f1_vs_teacher"] <= full["f1_vs_teacher_ci"][1],
    }
    note = f"both arms capped at {args.steps} steps x {args.batch_size * ACCUMULATION} examples ({'GPU' if machine()['cuda'] else 'CPU'})"
    print()
    print_table([{**r, "note": note} for r in rows],
                ["arm", "input_tokens_mean", "train_examples_seen", "examples_per_s", "train_s", "serve_p50_ms",
                 "serve_p95_ms", "f1_vs_teacher", "f1_vs_teacher_ci", "note"])
    print(f"\npruning: {ratios['input_tokens']}x fewer input tokens (goal >= 10x), training "
          f"{ratios['training_per_example']}x faster per example (goal >= 5x), serving p50 {ratios['serving_p50']}x "
          f"faster (goal >= 5x), F1 difference {ratios['f1_difference']:+.3f} (inside the full arm's CI: "
          f"{ratios['pruned_f1_inside_full_ci']})")
    write_results("pruning", {"machine": machine(), "args": vars(args), "static_prompt": {
        k: static[k] for k in ("tokens", "share", "variable_tokens_mean", "token_counter")}, "rows": rows,
        "ratios": ratios, "note": note}, args.json)


if __name__ == "__main__":
    main()
