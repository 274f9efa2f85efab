"""Training throughput: our customizer against a plain `transformers.Trainer` + peft script.

    python -m bench.training_throughput [--examples 160] [--epochs 1] [--batch-size 8] [--threads 2]

Both arms train the same LoRA (rank/alpha/dropout/targets from config.yaml) on the same
SmolLM2-135M-Instruct, the same tokenized Twitter-topic teacher logs (prompt tokens masked, loss
on the answer), with the same batch size, learning rate, warm-up, epochs and seed, each in a
fresh child process (clean peak RSS). The baseline pads each batch to its longest example
(`DataCollatorForSeq2Seq`, which is `DataCollatorWithPadding` plus label padding), with no
packing or length grouping, and computes logits over every position. Ours groups by length and
computes logits only at answer positions. Final val loss is measured the same way for both.
Prints a table, writes bench/results/training_throughput.json. Goal: >= 1.3x, equal loss.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import build_real_dataset, machine, print_table, run_in_child, train_subset, write_results

MODEL = "smollm2-135m-instruct"


def _val_loss(model: Any, tokenizer: Any, dataset: Any, max_length: int, batch_size: int) -> float:
    import torch

    from services.models.students.causal_lm_lora.trainer import _tokenize, answer_loss
    from services.models.training.batching import collate

    val, _, _ = _tokenize(tokenizer, dataset.read_split("val"), max_length)
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(val), batch_size):
            chunk = val[i:i + batch_size]
            total += float(answer_loss(model, collate(chunk, pad_id=tokenizer.pad_token_id, left=True))) * len(chunk)
            count += len(chunk)
    return total / count


def ours(root: str, dataset_id: str, threads: int, training: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    from services.customizer.service import train_candidate
    from services.domain.datasets import load_dataset

    settings = _settings(Path(root), training)
    started = time.perf_counter()
    artifact = train_candidate(settings, "smollm2-lora", dataset_id)
    wall = time.perf_counter() - started
    m = artifact.metrics
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = Path(settings.models.cache_dir) / MODEL
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(base)), str(Path(artifact.path) / "adapter"))
    dataset = load_dataset(Path(root) / "artifacts" / "datasets", dataset_id)
    return {"arm": "flywheel customizer", "train_s": m["train_seconds"], "wall_s": round(wall, 1),
            "examples": m["examples"], "examples_per_s": m["examples_per_s"], "steps": m["steps"],
            "val_loss": _val_loss(model, tokenizer, dataset, training["max_seq_length"], training["batch_size"]),
            "padding_share": m.get("padding_share_first_epoch")}


def plain(root: str, dataset_id: str, threads: int, training: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from services.customizer.service import plan_training
    from services.domain.datasets import load_dataset
    from services.models.students.causal_lm_lora.trainer import _tokenize, lora_config

    settings = _settings(Path(root), training)
    dataset = load_dataset(Path(root) / "artifacts" / "datasets", dataset_id)
    request = plan_training(settings, "smollm2-lora", dataset)
    base = Path(settings.models.cache_dir) / MODEL
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    started = time.perf_counter()
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(base)), lora_config(request, "CAUSAL_LM"))
    train, _, _ = _tokenize(tokenizer, dataset.read_split("train"), training["max_seq_length"])
    rows = [{"input_ids": e.input_ids, "attention_mask": [1] * len(e), "labels": e.labels} for e in train]
    args = TrainingArguments(
        output_dir=str(Path(root) / "plain"), per_device_train_batch_size=training["batch_size"],
        learning_rate=training["learning_rate"], num_train_epochs=training["epochs"],
        warmup_steps=training["warmup_ratio"], lr_scheduler_type="linear", weight_decay=0.0, max_grad_norm=1.0,
        seed=training["seed"], save_strategy="no", eval_strategy="no", report_to=[], logging_steps=1000,
        use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0, disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=rows,
                      data_collator=DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=-100))
    out = trainer.train()
    wall = time.perf_counter() - started
    runtime = out.metrics["train_runtime"]
    return {"arm": "Trainer + peft (plain)", "train_s": round(runtime, 3), "wall_s": round(wall, 1),
            "examples": len(rows) * training["epochs"], "examples_per_s": round(len(rows) * training["epochs"] / runtime, 3),
            "steps": out.global_step,
            "val_loss": _val_loss(model, tokenizer, dataset, training["max_seq_length"], training["batch_size"]),
            "padding_share": None}


def _settings(root: Path, training: dict[str, Any]) -> Any:
    from bench.common import REPO
    from services.domain.settings import Settings, load_settings

    base = load_settings(REPO / "config.yaml").model_dump(mode="python")
    base["artifacts"] = {"root": root / "artifacts"}
    base["training"].update(training)
    for candidate in base["candidates"]:
        candidate["training"] = {}
    return Settings.model_validate(base)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=160, help="Training examples (one pass each per epoch).")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in both arms.")
    parser.add_argument("--json", type=Path, default=None, help="Where to write results.")
    args = parser.parse_args()
    training = {"epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": 2e-4, "warmup_ratio": 0.05,
                "max_seq_length": 256, "seed": 42, "max_steps": None, "early_stopping_patience": 0,
                "eval_every_steps": 10_000, "max_val_examples": 64, "checkpoint_every_steps": 10_000}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        settings, full = build_real_dataset(root, "twitter_topic", limit=args.examples + 400, eval_size=200)
        dataset = train_subset(root, full, args.examples)
        rows = [run_in_child(plain, tmp, dataset.dataset_id, args.threads, training),
                run_in_child(ours, tmp, dataset.dataset_id, args.threads, training)]
    speedup = rows[0]["train_s"] / rows[1]["train_s"]
    for row in rows:
        row["speedup_vs_plain"] = round(rows[0]["train_s"] / row["train_s"], 2)
    print(f"\nLoRA SFT of {MODEL}, {args.examples} Twitter-topic examples x {args.epochs} epoch(s), "
          f"batch {args.batch_size}, {args.threads} threads")
    print_table(rows, ["arm", "examples", "steps", "train_s", "examples_per_s", "speedup_vs_plain", "val_loss",
                       "peak_rss_mb", "padding_share", "wall_s"])
    print(f"speed-up {speedup:.2f}x (goal >= 1.3x); val loss {rows[1]['val_loss']:.4f} vs {rows[0]['val_loss']:.4f}")
    write_results("training_throughput", {"machine": machine(), "settings": {**training, "examples": args.examples,
                  "threads": args.threads, "model": MODEL}, "rows": rows, "speedup": round(speedup, 3)}, args.json)


if __name__ == "__main__":
    main()
