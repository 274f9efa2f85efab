"""Learning curve like the peer's headline table: f1_vs_teacher against training-set size.

    python -m bench.learning_curve [--sources twitter_topic phrasebank] [--sizes 500 1000 2000 4000 all]
                                   [--lm-sizes 200] [--lm-steps 25] [--eval-size 200] [--threads 2]
    python -m bench.learning_curve --sources standin --sizes 250 500 800 all --seeds 0 1 --no-lm   # the recipes

`standin` is the realistic stand-in (services/datastore/standin.py: 2,000 records under a long class-defining
prompt, a simulated teacher wrong on 15% of them between confusable classes). Encoder recipes, each a row:
`head` (the default: frozen encoder + cross-fitted logistic-regression head, averaged with a TF-IDF head,
with the class definitions of the teacher's prompt as extra examples) for MiniLM and mpnet, MiniLM without
each of the two levers, and
`full-3ep` (the earlier default recipe: MiniLM full fine-tune, lr 1e-4, 3 epochs, batch 16). `--seeds` draws
that many training subsets per size (the eval split stays fixed); the table reports each and their mean.

For each source (real finance text turned into teacher logs: the label is the teacher's answer),
one dataset is built by the real pipeline; every size trains on a seeded sample of its train
split and is scored on the same eval split (f1_vs_teacher with a bootstrap 95% CI):
- TF-IDF + logistic regression (the floor a neural student must beat),
- the encoder-classifier student (MiniLM, candidate `minilm-classifier` from config.yaml),
- the SmolLM2-135M student: base and ICL (constrained label scoring, no training), and LoRA
  at the sizes this CPU affords (`--lm-sizes`, capped at `--lm-steps` steps: labelled so).
PhraseBank is read from ../shared/data (non-commercial licence: never copied into the repo).
Prints a table, writes bench/results/learning_curve.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import build_real_dataset, machine, print_table, run_in_child, train_subset, write_results


def tfidf(root: str, dataset_id: str, source: str) -> dict[str, Any]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from services.domain.datasets import load_dataset
    from services.domain.labels import LabelParser
    from services.evaluator.metrics.classification import classification_report
    from services.models.runtime.chat_format import content_text, last_user_text

    dataset = load_dataset(Path(root) / "artifacts" / "datasets", dataset_id)
    parser = LabelParser(labels=dataset.labels())
    train = [(last_user_text(line["messages"][:-1]), parser.parse(content_text(line["messages"][-1]["content"])))
             for line in dataset.read_split("train")]
    evals = [(last_user_text(r["request"]["messages"]), parser.parse(r["response"]["choices"][0]["message"]["content"]))
             for r in dataset.read_split("eval")]
    started = time.perf_counter()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)
    model = LogisticRegression(max_iter=2000, C=10.0).fit(vectorizer.fit_transform([t for t, _ in train]), [y for _, y in train])
    train_s = time.perf_counter() - started
    predicted = list(model.predict(vectorizer.transform([t for t, _ in evals])))
    report = classification_report([y for _, y in evals], predicted, bootstrap_samples=1000, seed=0)
    return {"student": "tfidf+logreg", "f1_vs_teacher": report["f1_vs_teacher"],
            "f1_vs_teacher_ci": report["f1_vs_teacher_ci"], "train_s": round(train_s, 1)}


RECIPES: dict[str, tuple[str, dict[str, Any]]] = {
    # Overrides on the candidate's training in config.yaml (where MiniLM's default is `head_full`).
    "minilm head": ("minilm-classifier", {"finetune": "head"}),
    "mpnet head": ("mpnet-classifier", {}),
    "minilm head, no prompt examples": ("minilm-classifier", {"finetune": "head", "prompt_examples": False}),
    "minilm head, no TF-IDF": ("minilm-classifier", {"finetune": "head", "lexical_mix": 0.0}),
    "minilm full-3ep (earlier default)": ("minilm-classifier", {"finetune": "full", "learning_rate": 1e-4, "epochs": 3,
                                                                "batch_size": 16, "max_seq_length": 256}),
    # The head first, then every weight fine-tuned from it (LP-FT), best step on val; ~10x the head's CPU time.
    "minilm head_full": ("minilm-classifier", {}),  # the shipped recipe
    "mpnet head_full": ("mpnet-classifier", {"finetune": "head_full", "learning_rate": 5e-5, "epochs": 4,
                                             "batch_size": 16}),
}


def student(root: str, dataset_id: str, candidate: str, threads: int, training: dict[str, Any],
            kinds: list[str]) -> dict[str, Any]:
    import os

    os.environ["FLYWHEEL_TORCH_THREADS"] = str(threads)
    from services.customizer.service import train_candidate
    from services.domain.evaluation import EvalKind
    from services.evaluator.runner import evaluate

    settings = _settings(Path(root), training)
    out: dict[str, Any] = {"student": candidate}
    artifact = None
    if "customized" in kinds:
        artifact = train_candidate(settings, candidate, dataset_id)
        out.update(train_s=artifact.metrics["train_seconds"], examples_per_s=artifact.metrics["examples_per_s"],
                   steps=artifact.metrics["steps"])
    for kind in kinds:
        # The artifact just trained: several recipes of one candidate share a dataset.
        result = evaluate(settings, candidate=candidate, dataset_id=dataset_id, kind=EvalKind(kind),
                          artifact=artifact if kind == "customized" else None)
        public = result.to_public()
        suffix = "" if kind == "customized" else f"_{kind}"
        out[f"f1_vs_teacher{suffix}"] = public.get("f1_vs_teacher")
        out[f"f1_vs_teacher_ci{suffix}"] = public.get("f1_vs_teacher_ci")
        out[f"p50_ms{suffix}"] = result.latency.p50_ms if result.latency else None
        selective = (public.get("metrics") or {}).get("selective") or {}
        if selective.get("agreement") is not None:  # the guarantee's walk on the eval split (docs/selective.md)
            out[f"selective{suffix}"] = (f"{selective['coverage']:.0%} at {selective['agreement']:.3f} "
                                         f"[{selective['agreement_ci_low']:.3f}]")
    return out


def _settings(root: Path, training: dict[str, Any]) -> Any:
    from bench.common import REPO
    from services.domain.settings import Settings, load_settings

    base = load_settings(REPO / "config.yaml").model_dump(mode="python")
    base["artifacts"] = {"root": root / "artifacts"}
    for candidate in base["candidates"]:
        candidate["training"] = {**{k: v for k, v in candidate["training"].items() if v is not None},
                                 **training.get(candidate["name"], {})}
    return Settings.model_validate(base)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", nargs="+", default=["twitter_topic", "phrasebank"])
    parser.add_argument("--sizes", nargs="*", default=["500", "1000", "2000", "4000", "all"])
    parser.add_argument("--lm-sizes", nargs="*", type=int, default=[200], help="SmolLM2 LoRA sizes (CPU: small).")
    parser.add_argument("--lm-steps", type=int, default=25, help="Step cap of each SmolLM2 LoRA run on CPU.")
    parser.add_argument("--no-lm", action="store_true", help="Skip SmolLM2 (base, ICL and LoRA).")
    parser.add_argument("--no-base-icl", action="store_true", help="Skip the SmolLM2 base and ICL evaluations.")
    parser.add_argument("--eval-size", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="Training-subset draws per size.")
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--records", type=int, default=2000, help="Records of the stand-in source.")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    for source in args.sources:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            try:
                _, full = build_real_dataset(root, source, limit=args.records if source == "standin" else None,
                                             eval_size=args.eval_size)
            except FileNotFoundError as exc:
                print(f"skipping {source}: {exc}")
                continue
            available = full.splits["train"]["count"]
            sizes = sorted({available if s == "all" else min(int(s), available) for s in args.sizes})
            if not args.no_lm and not args.no_base_icl:
                row = run_in_child(student, tmp, full.dataset_id, "smollm2-lora", args.threads, {}, ["base", "icl"])
                rows.append({"source": source, "train_size": 0, **row})
                print(rows[-1], flush=True)
            for size in sizes:
                # The whole train split is the same for every seed: one run.
                for seed in args.seeds if size < available else args.seeds[:1]:
                    subset = train_subset(root, full, size, seed=seed)
                    common = {"source": source, "train_size": size, "seed": seed}
                    rows.append({**common, **run_in_child(tfidf, tmp, subset.dataset_id, source)})
                    print(rows[-1], flush=True)
                    for recipe in args.recipes:
                        candidate, training = RECIPES[recipe]
                        row = run_in_child(student, tmp, subset.dataset_id, candidate, args.threads,
                                           {candidate: training}, ["customized"])
                        rows.append({**common, **row, "student": recipe})
                        print(rows[-1], flush=True)
            for size in [] if args.no_lm else args.lm_sizes:
                subset = train_subset(root, full, min(size, available))
                row = run_in_child(student, tmp, subset.dataset_id, "smollm2-lora", args.threads,
                                   {"smollm2-lora": {"max_steps": args.lm_steps}}, ["customized"])
                rows.append({"source": source, "train_size": min(size, available),
                             "note": f"capped at {args.lm_steps} steps (CPU)", **row})
                print(rows[-1], flush=True)
    rows += _means(rows)
    print()
    print_table(rows, ["source", "student", "train_size", "seed", "f1_vs_teacher", "f1_vs_teacher_ci", "f1_vs_teacher_base",
                       "f1_vs_teacher_icl", "selective", "train_s", "examples_per_s", "p50_ms", "note"])
    write_results("learning_curve", {"machine": machine(), "args": vars(args), "rows": rows}, args.json)


def _means(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (source, student, size) with the mean F1 over seeds, when there are several."""
    groups: dict[tuple[str, str, int], list[float]] = {}
    for row in rows:
        if row.get("seed") is not None and row.get("f1_vs_teacher") is not None:
            groups.setdefault((row["source"], row["student"], row["train_size"]), []).append(row["f1_vs_teacher"])
    return [{"source": source, "student": student, "train_size": size, "seed": "mean",
             "f1_vs_teacher": round(sum(values) / len(values), 4)}
            for (source, student, size), values in groups.items() if len(values) > 1]


if __name__ == "__main__":
    main()
