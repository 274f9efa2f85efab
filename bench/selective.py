"""Selective answering on the stand-in: coverage vs agreement per recipe, and how often the guarantee fails.

    python -m bench.selective [--records 2000] [--new-traffic 3000] [--splits 300] [--recipes minilm-l6 mpnet-base]
                              [--confidence margin probability]

The stand-in (services/datastore/standin.py) gives `--records` logged records plus `--new-traffic` later
records from the same simulated teacher. Per recipe (a frozen encoder + the cross-fitted
logistic-regression head, exactly the customizer's `finetune: head` code): the head is fitted on the
logged records less an `--eval-size` eval split (200), as a job does; the walk's start is planned on its
out-of-fold predictions (simulated reports) and the threshold confirmed on the eval split by fixed-sequence testing from there
(min_agreement, one-sided 95%; services/evaluator/metrics/selective.py); coverage and the served share's
agreement with its lower bound are reported on the eval split, and the truth is measured on the new traffic.

The guarantee's failure rate: over `--splits` random draws of `--eval-size` report records from the new traffic
(the population the report is a sample of), a selective promotion happens when the report's lower bound is
at or above min_agreement and coverage at or above min_coverage; it fails when the served share's agreement
over the whole new traffic is below min_agreement. A rate at or below delta = 0.05 is what the method
promises. (Measuring the truth on the records left out of each draw instead adds that remainder's own
sampling noise, about +/-0.008 at ~1,300 served records, and counts walks that stop just above the target as
failures; that rate is kept in the JSON as `... failure rate (rest)`.)
Prints tables; writes bench/results/selective.json.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import REPO, machine, print_table, write_results


def recipe_predictions(model_name: str, logs: list[dict[str, Any]], traffic: list[dict[str, Any]],
                       seed: int, lexical_mix: float, cache: dict[str, Any], eval_size: int,
                       confidence_kinds: list[str]) -> dict[str, dict[str, Any]]:
    """One fit of the recipe's head; per confidence kind, its (confidence, agreed) on the out-of-fold records, the
    eval split and the new traffic."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from services.domain.labels import LabelParser
    from services.domain.settings import default_models_dir
    from services.models.runtime.chat_format import last_user_text
    from services.models.students.encoder_classifier.head import encode, fit_head
    from services.models.students.encoder_classifier.runtime import confidence_of

    parser = LabelParser(r"\[\[\[\s*(.+?)\s*\]\]\]")
    texts = [last_user_text(r["request"]["messages"]) for r in logs + traffic]
    labels = [parser.parse(r["response"]["choices"][0]["message"]["content"]) for r in logs + traffic]
    names = sorted(set(labels))
    y = np.array([names.index(label) for label in labels])
    path = default_models_dir() / model_name
    torch.set_num_threads(2)
    import hashlib

    key = hashlib.sha256(("\n".join(texts) + model_name).encode()).hexdigest()[:16]
    stored = REPO / "var" / "bench-cache" / f"selective-{model_name}-{key}.npz"
    if model_name not in cache and stored.exists():  # encodings survive reruns (other policies, other splits)
        with np.load(stored) as saved:
            cache[model_name] = (saved["vectors"], float(saved["seconds"]))
    if model_name not in cache:  # one encoding per model, shared by its recipes
        started = time.perf_counter()
        vectors = encode(AutoModel.from_pretrained(str(path)), AutoTokenizer.from_pretrained(str(path)), texts,
                         max_length=128)
        cache[model_name] = (vectors, time.perf_counter() - started)
        stored.parent.mkdir(parents=True, exist_ok=True)
        np.savez(stored, vectors=vectors, seconds=cache[model_name][1])
    vectors, encode_s = cache[model_name]
    order = list(range(len(logs)))
    random.Random(seed).shuffle(order)
    eval_rows, train_rows = np.array(order[:eval_size]), np.array(order[eval_size:])
    fitted = fit_head(vectors[train_rows], y[train_rows], len(names), seed=seed,
                      texts=[texts[i] for i in train_rows], lexical_mix=lexical_mix)
    logits = vectors @ fitted["weight"].T + fitted["bias"]
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    if "lexical" in fitted:
        probs = (1 - lexical_mix) * probs + lexical_mix * fitted["lexical"].probabilities(texts)
    correct, oof_correct = probs.argmax(axis=1) == y, np.array(fitted["oof_correct"])
    new = np.arange(len(logs), len(logs) + len(traffic))
    from sklearn.metrics import f1_score

    f1_new = float(f1_score(y[new], probs[new].argmax(axis=1), average="macro"))
    by_kind = {}
    for kind in confidence_kinds:
        confidence = confidence_of(probs, kind)
        by_kind[kind] = {"oof": (confidence_of(fitted["oof_probs"], kind), oof_correct), "f1_new": f1_new,
                         "eval": (confidence[eval_rows], correct[eval_rows]), "new": (confidence[new], correct[new]),
                         "encode_s": encode_s, "C": fitted["C"]}
    return by_kind


def finetuned_predictions(model_name: str, logs: list[dict[str, Any]], traffic: list[dict[str, Any]], seed: int,
                          eval_size: int, confidence_kinds: list[str]) -> dict[str, dict[str, Any]]:
    """The shipped `head_full` recipe (config.yaml's MiniLM training) through the customizer itself (the job's path: a dataset of the logged records, the
    head fitted on its train split, then every weight fine-tuned, best step on val): per confidence kind, its
    (confidence, agreed) on the val split (where a fine-tuned student's walk is planned), the eval split and the new
    traffic. The eval split is the dataset builder's (`eval_size` records), not the head recipes' seeded draw."""
    import tempfile

    from sklearn.metrics import f1_score

    from bench.common import build_real_dataset
    from services.customizer.service import train_candidate
    from services.domain.labels import LabelParser
    from services.domain.settings import load_settings
    from services.models.runtime.chat_format import last_user_text
    from services.models.students.encoder_classifier.runtime import ClassifierRunner, confidence_of

    parser = LabelParser(r"\[\[\[\s*(.+?)\s*\]\]\]")
    workload = logs[0]["workload_id"]
    shipped = load_settings(REPO / "config.yaml").candidate("minilm-classifier").training  # the default head_full
    candidate = {"name": "finetuned", "model": model_name, "kind": "encoder_classifier",
                 "training": {**shipped.model_dump(exclude_none=True), "finetune": "head_full", "seed": seed}}
    with tempfile.TemporaryDirectory() as tmp:
        settings, dataset = build_real_dataset(Path(tmp), workload, limit=None, eval_size=eval_size, logs=logs,
                                               settings_update={"candidates": [candidate],
                                                                "data_split": {"eval_ratio": None}})
        started = time.perf_counter()
        artifact = train_candidate(settings, "finetuned", dataset.dataset_id)
        train_s = time.perf_counter() - started
        runner = ClassifierRunner(Path(artifact.path) / "model")

        def texts_and_labels(lines: list[dict[str, Any]]) -> tuple[list[str], list[str | None]]:
            """Training lines ({"messages"}: val) or logged records ({"request", "response"}: eval, new traffic)."""
            pairs = [(last_user_text(line["messages"][:-1]), line["messages"][-1]["content"]) if "messages" in line
                     else (last_user_text(line["request"]["messages"]), line["response"]["choices"][0]["message"]["content"])
                     for line in lines]
            return [text for text, _ in pairs], [parser.parse(answer) for _, answer in pairs]

        eval_texts, eval_labels = texts_and_labels(list(dataset.read_split("eval")))
        val_texts, val_labels = texts_and_labels(list(dataset.read_split("val")))
        new_texts, new_labels = texts_and_labels(traffic)

        def scored(texts: list[str], labels: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
            probs = np.concatenate([runner.probabilities(texts[i:i + 64]).numpy() for i in range(0, len(texts), 64)])
            return probs, np.array([runner.labels[int(i)] == label for i, label in zip(probs.argmax(axis=1), labels,
                                                                                       strict=True)])

        (val_p, val_ok), (eval_p, eval_ok), (new_p, new_ok) = (scored(val_texts, val_labels),
                                                              scored(eval_texts, eval_labels),
                                                              scored(new_texts, new_labels))
    f1_new = float(f1_score(new_labels, [runner.labels[int(i)] for i in new_p.argmax(axis=1)], average="macro"))
    return {kind: {"oof": (confidence_of(val_p, kind), val_ok), "f1_new": f1_new,
                   "eval": (confidence_of(eval_p, kind), eval_ok), "new": (confidence_of(new_p, kind), new_ok),
                   "encode_s": train_s, "C": artifact.metrics.get("head_C")}
            for kind in confidence_kinds}


def main() -> None:
    from services.datastore.standin import simulated_teacher_logs
    from services.evaluator.metrics.selective import choose_threshold, coverage_curve, measure, selective_report

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--new-traffic", type=int, default=3000)
    parser.add_argument("--splits", type=int, default=300)
    parser.add_argument("--recipes", nargs="+", default=["minilm-l6", "minilm-l6+tfidf", "mpnet-base+tfidf"],
                        help="MODEL or MODEL+tfidf (the encoder head averaged with a TF-IDF head, lexical_mix 0.5), or "
                             "MODEL+tfidf+ft (`finetune: head_full` through the customizer: that head, then every "
                             "weight fine-tuned; its walk is planned on the val split, its `encode_s` is the training).")
    parser.add_argument("--confidence", nargs="+", choices=["margin", "probability"], default=["margin", "probability"],
                        help="What the threshold is set on: the lead of the top class over the runner-up (the "
                             "default since issue 16's last turn) or the top probability (before); a row per kind.")
    parser.add_argument("--noise-focus", type=float, default=3.0,
                        help="How strongly the simulated teacher's errors fall on ambiguous texts (0: uniformly).")
    parser.add_argument("--eval-size", type=int, default=200,
                        help="Eval (report) records held out of the logged records, as data_split.eval_size.")
    parser.add_argument("--min-agreement", type=float, default=0.9)
    parser.add_argument("--min-coverage", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    logs, traffic, summary = simulated_teacher_logs(REPO / "data" / "twitter_financial_news_topic",
                                                    records=args.records, holdout=args.new_traffic, seed=args.seed,
                                                    noise_focus=args.noise_focus)
    print(f"stand-in: {summary}", flush=True)
    rows, curves, failures, cache = [], {}, [], {}
    for recipe in args.recipes:
        model_name, _, lexical = recipe.partition("+")
        if lexical == "tfidf+ft":
            by_kind = finetuned_predictions(model_name, logs, traffic, args.seed, args.eval_size, args.confidence)
        else:
            by_kind = recipe_predictions(model_name, logs, traffic, args.seed, 0.5 if lexical else 0.0, cache,
                                         args.eval_size, args.confidence)
        for kind, pred in by_kind.items():
            name = f"{recipe} ({kind})"
            block = selective_report(pred["oof"], pred["eval"], min_agreement=args.min_agreement,
                                     min_coverage=args.min_coverage)
            truth = measure(*pred["new"], block["threshold"], 0.95)
            rows.append({"recipe": f"{name} head", "C": pred["C"], "f1_new": round(pred["f1_new"], 4),
                         "threshold": block["threshold"],
                         "eval_coverage": block["coverage"], "eval_agreement": block["agreement"],
                         "eval_agreement_low": block["agreement_ci_low"], "new_coverage": round(truth.coverage, 4),
                         "new_agreement": None if truth.agreement is None else round(truth.agreement, 4),
                         "accuracy_all_new": round(float(pred["new"][1].mean()), 4),
                         "encode_s": round(pred["encode_s"], 1)})
            print(rows[-1], flush=True)
            curves[name] = coverage_curve(*pred["new"], points=10)
            failures.append(_failure_rate(pred, args, choose_threshold, measure, name))
            print(failures[-1], flush=True)
    print()
    print_table(rows)
    print()
    print("coverage -> agreement on new traffic (top-confidence share served)")
    print_table([{"recipe": r, **{f"{c['coverage']:.0%}": c["agreement"] for c in curve}} for r, curve in curves.items()])
    print()
    print_table(failures)
    write_results("selective", {"machine": machine(), "args": vars(args), "standin": summary, "rows": rows,
                                "curves": curves, "guarantee": failures}, args.json)


def _failure_rate(pred: dict[str, Any], args: Any, choose_threshold: Any, measure: Any, recipe: str) -> dict[str, Any]:
    """Two ways of choosing on a random `--eval-size` of the new traffic standing for the eval split: as a job
    does (the start planned on the out-of-fold records by simulated reports, then fixed-sequence testing on the report from
    there: "planned walk") and fixed-sequence testing from the report's most confident record ("walk from
    the top"); the truth is the served share's agreement on the rest of the new traffic. A failure is a
    promotion whose truth is under the target, counted over all draws (what delta bounds)."""
    conf, ok = pred["new"]
    from services.evaluator.metrics.selective import selective_report

    rng = np.random.default_rng(args.seed)
    counts = {"planned walk": [0, 0, 0], "walk from the top": [0, 0, 0]}
    for _ in range(args.splits):
        order = rng.permutation(len(conf))
        report, rest = order[:args.eval_size], order[args.eval_size:]
        for method, threshold in (("planned walk", selective_report(pred["oof"], (conf[report], ok[report]),
                                                                    min_agreement=args.min_agreement,
                                                                    min_coverage=args.min_coverage)["threshold"]),
                                  ("walk from the top", choose_threshold(conf[report], ok[report],
                                                                      min_agreement=args.min_agreement).threshold)):
            shown = measure(conf[report], ok[report], threshold, 0.95)
            promoted = (threshold is not None and shown.agreement_ci_low is not None
                        and shown.agreement_ci_low >= args.min_agreement and shown.coverage >= args.min_coverage)
            if promoted:
                counts[method][0] += 1
                population = measure(conf, ok, threshold, 0.95)
                counts[method][1] += population.agreement is not None and population.agreement < args.min_agreement
                rest_truth = measure(conf[rest], ok[rest], threshold, 0.95)
                counts[method][2] += rest_truth.agreement is not None and rest_truth.agreement < args.min_agreement
    return {"recipe": recipe, "eval size": args.eval_size, "splits": args.splits,
            **{f"{m} promoted": c[0] for m, c in counts.items()},
            **{f"{m} failure rate": round(c[1] / args.splits, 4) for m, c in counts.items()},
            **{f"{m} failure rate (rest)": round(c[2] / args.splits, 4) for m, c in counts.items()}}


if __name__ == "__main__":
    main()
