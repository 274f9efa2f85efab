"""Pruning's speed on a GPU: SmolLM2-135M LoRA training and label serving with and without the
teacher's static prompt, on the real prompts of bench.pruning, in one run.

    python -m bench.pruning_gpu --model-dir ~/.cache/flywheel/models/smollm2-135m-instruct [--random-init] [--steps 30]

Self-contained on purpose (torch, transformers and peft only): GPU machines lent to this project
carry those but not the platform's other dependencies, and cannot download weights. With
`--random-init` the model is built from the directory's config.json and tokenizer with random
weights: speed is a property of the architecture and the token counts, so the timings hold; the
quality of a randomly initialised model is not measured (bench.pruning measures F1 on CPU).
Per arm: training examples/s over `--steps` LoRA steps (bf16 autocast, batch `--batch-size`), and
serving latency per request at batch 1 with the adapter merged: one forward pass over the prompt, then the 20 rendered
labels scored from its KV cache (constrained label scoring, as the local backend serves).
Prints a table; writes bench/results/pruning_gpu.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import statistics
import time
from pathlib import Path
from typing import Any

from bench.pruning import FOLDER, long_system_prompt
from services.domain.settings import default_models_dir

REPO = Path(__file__).resolve().parents[1]


def prompts(tokenizer: Any, n: int, pruned: bool) -> tuple[list[list[int]], list[list[int]]]:
    """(prompt ids, answer ids) for n real headlines under the long static prompt or the task tag."""
    labels = [line.strip() for line in (FOLDER / "label_names.txt").read_text("utf-8").splitlines() if line.strip()]
    system = "task: twitter_topic" if pruned else long_system_prompt(labels)
    with (FOLDER / "topic_train.csv").open(encoding="utf-8", newline="") as handle:
        rows = [(r["text"], int(r["label"])) for r in csv.DictReader(handle)]
    random.Random(0).shuffle(rows)
    prompt_ids, answer_ids = [], []
    for text, label in rows[:n]:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": text}]
        prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        prompt_ids.append(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        answer_ids.append(tokenizer(f"[[[{labels[label]}]]]<|im_end|>", add_special_tokens=False)["input_ids"])
    return prompt_ids, answer_ids


def train_speed(model: Any, prompt_ids: list[list[int]], answer_ids: list[list[int]], *, steps: int,
                batch_size: int, device: Any) -> dict[str, Any]:
    import torch

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    pad = 0

    def batch(i: int) -> tuple[Any, Any, Any]:
        items = [(prompt_ids[j % len(prompt_ids)], answer_ids[j % len(answer_ids)])
                 for j in range(i * batch_size, (i + 1) * batch_size)]
        width = max(len(p) + len(a) for p, a in items)
        ids = torch.full((len(items), width), pad, dtype=torch.long)
        labels = torch.full((len(items), width), -100, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        for row, (p, a) in enumerate(items):
            seq = p + a
            ids[row, width - len(seq):] = torch.tensor(seq)  # left padding, as the customizer batches
            labels[row, width - len(a):] = torch.tensor(a)
            mask[row, width - len(seq):] = 1
        return ids.to(device), labels.to(device), mask.to(device)

    def step(i: int) -> None:
        ids, labels, mask = batch(i)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for i in range(3):  # warm-up: kernels, allocator
        step(i)
    _sync(device)
    started = time.perf_counter()
    for i in range(steps):
        step(i + 3)
    _sync(device)
    seconds = time.perf_counter() - started
    return {"train_steps": steps, "train_s": round(seconds, 3), "examples_per_s": round(steps * batch_size / seconds, 1)}


def serve_latency(model: Any, tokenizer: Any, prompt_ids: list[list[int]], *, requests: int, device: Any) -> dict[str, Any]:
    import torch

    labels = [line.strip() for line in (FOLDER / "label_names.txt").read_text("utf-8").splitlines() if line.strip()]
    label_ids = [tokenizer(f"[[[{label}]]]", add_special_tokens=False)["input_ids"] for label in labels]
    width = max(map(len, label_ids))
    suffix = torch.zeros((len(labels), width), dtype=torch.long, device=device)
    for row, ids in enumerate(label_ids):
        suffix[row, :len(ids)] = torch.tensor(ids)
    seconds = []
    model.eval()
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        for i in range(requests + 3):
            ids = torch.tensor([prompt_ids[i % len(prompt_ids)]], device=device)
            _sync(device)
            started = time.perf_counter()
            first = model(input_ids=ids, use_cache=True)
            cache = first.past_key_values
            cache.batch_repeat_interleave(len(labels))
            out = model(input_ids=suffix, past_key_values=cache, use_cache=True)
            int(out.logits[:, -1, :].float().max(dim=-1).values.argmax())  # the choice, read back to the host
            _sync(device)
            if i >= 3:
                seconds.append(time.perf_counter() - started)
    ordered = sorted(seconds)
    return {"serve_p50_ms": round(statistics.median(ordered) * 1000, 2),
            "serve_p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 2), "serve_requests": requests}


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=default_models_dir() / "smollm2-135m-instruct")
    parser.add_argument("--random-init", action="store_true", help="Config and tokenizer only: random weights.")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    rows = []
    for pruned in (False, True):
        torch.manual_seed(0)
        if args.random_init:
            model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(args.model_dir))
        else:
            model = AutoModelForCausalLM.from_pretrained(args.model_dir)
        model = get_peft_model(model.to(device), LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                                                            task_type="CAUSAL_LM"))
        prompt_ids, answer_ids = prompts(tokenizer, 512, pruned)
        row: dict[str, Any] = {"arm": "pruned" if pruned else "full prompt",
                               "input_tokens_mean": round(statistics.mean(map(len, prompt_ids)), 1)}
        row.update(train_speed(model, prompt_ids, answer_ids, steps=args.steps, batch_size=args.batch_size, device=device))
        # Served as the local backend serves: the adapter merged into the base (fewer kernels per token).
        model = model.merge_and_unload()
        row.update(serve_latency(model, tokenizer, prompt_ids, requests=args.requests, device=device))
        rows.append(row)
        print(row, flush=True)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    full, pruned_row = rows
    ratios = {"input_tokens": round(full["input_tokens_mean"] / pruned_row["input_tokens_mean"], 1),
              "training_per_example": round(pruned_row["examples_per_s"] / full["examples_per_s"], 1),
              "serving_p50": round(full["serve_p50_ms"] / pruned_row["serve_p50_ms"], 1)}
    device_name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    print(f"\n{device_name}, {'random-init ' if args.random_init else ''}SmolLM2-135M LoRA r16, bf16 autocast")
    columns = ["arm", "input_tokens_mean", "examples_per_s", "train_s", "serve_p50_ms", "serve_p95_ms"]
    print(" | ".join(columns))
    for row in rows:
        print(" | ".join(str(row[c]) for c in columns))
    print(f"pruning: {ratios['input_tokens']}x fewer input tokens, training {ratios['training_per_example']}x faster "
          f"per example, serving p50 {ratios['serving_p50']}x faster")
    target = args.json or REPO / "bench" / "results" / "pruning_gpu.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps({"device": device_name, "random_init": args.random_init, "args": {
        k: str(v) for k, v in vars(args).items()}, "torch": torch.__version__, "rows": rows, "ratios": ratios}, indent=2))
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
