"""A realistic stand-in for a team's first weeks of teacher logs: Twitter topics under a long
class-defining system prompt, answered by a *simulated* teacher that is wrong like a real one.

Real teacher logs are noisy: a large teacher agrees with human labels on ~85% of records, and its
disagreements fall between confusable classes. The simulated teacher answers the human label,
except on a seeded `noise` share of records, where it answers the class a TF-IDF model (fitted
out-of-fold on the whole set) finds most likely for that headline other than the human one — the
confusable class *for that text*, not a fixed per-class swap. The system prompt defines every class
with two example headlines from the validation file (never in the logs), ~1,200 tokens, like the
seed's teacher prompt. `flywheel data standin` writes it; `bench/` and the demo use it.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path
from typing import Any

from services.datastore.convert import DEFAULT_START_TS, DEFAULT_TEACHER, Example, format_label, to_log_record

DESCRIPTIONS = {
    "Analyst Update": "an analyst changes a rating, price target or estimate",
    "Fed | Central Banks": "central bank decisions, speeches and policy expectations",
    "Company | Product News": "a company's products, launches, deals with customers or operations",
    "Treasuries | Corporate Debt": "government bonds, yields, corporate bond issuance and credit",
    "Dividend": "dividend declarations, increases, cuts or special payouts",
    "Earnings": "quarterly results, revenue, profit, guidance",
    "Energy | Oil": "oil, gas, OPEC, energy prices and producers",
    "Financials": "banks, insurers and other financial firms as businesses",
    "Currencies": "exchange rates, the dollar, crypto and currency moves",
    "General News | Opinion": "general news, commentary and opinion without a narrower topic",
    "Gold | Metals | Materials": "gold, silver, copper, steel and other materials",
    "IPO": "initial public offerings, listings and SPAC debuts",
    "Legal | Regulation": "lawsuits, regulators, fines, investigations and new rules",
    "M&A | Investments": "mergers, acquisitions, stakes and investments",
    "Macro": "economic data: inflation, jobs, GDP, trade, housing",
    "Markets": "broad market moves: indexes, sectors, global markets",
    "Politics": "elections, governments, legislation and geopolitics",
    "Personnel Change": "executives hired, fired, resigning or appointed",
    "Stock Commentary": "opinions and analysis about a particular stock",
    "Stock Movement": "a particular stock rising or falling, with the move as the news",
}


def _rows(folder: Path, split: str) -> tuple[list[str], list[tuple[str, int]]]:
    labels = [line.strip() for line in (folder / "label_names.txt").read_text("utf-8").splitlines() if line.strip()]
    with (folder / f"topic_{split}.csv").open(encoding="utf-8", newline="") as handle:
        return labels, [(r["text"], int(r["label"])) for r in csv.DictReader(handle)]


def long_system_prompt(folder: Path, *, per_class: int = 2, seed: int = 0) -> str:
    """Every class defined, with `per_class` example headlines from the validation file (never in the logs)."""
    labels, rows = _rows(folder, "valid")
    rows = [(text.split("https://")[0].strip(), y) for text, y in rows]
    random.Random(seed).shuffle(rows)
    lines = ["You are a financial analyst assistant. Classify the topic of this finance news headline.",
             "Choose exactly one of these labels. Definitions and examples:"]
    for index, label in enumerate(labels):
        examples = [text for text, y in rows if y == index][:per_class]
        lines.append(f"- {label}: {DESCRIPTIONS.get(label, label)}. Examples: " + " | ".join(f'"{e}"' for e in examples))
    lines.append(f"Answer with the label only, wrapped in triple square brackets, for example [[[{labels[0]}]]].")
    return "\n".join(lines)


def confusable_labels(texts: list[str], labels: list[int], *, seed: int = 0) -> tuple[list[int], list[float]]:
    """For each text, the class an out-of-fold TF-IDF model scores highest other than its own, and how
    ambiguous the text is (that class's score minus its own: higher is more confusable)."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.svm import LinearSVC

    features = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2).fit_transform(texts)
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    scores = cross_val_predict(LinearSVC(C=0.5), features, labels, cv=folds, method="decision_function")
    rows = np.arange(len(labels))
    own = scores[rows, labels].copy()
    scores[rows, labels] = -np.inf  # never the human label itself
    confused = scores.argmax(axis=1)
    return [int(i) for i in confused], [float(x) for x in scores[rows, confused] - own]


def simulated_teacher_logs(
    folder: Path, *, records: int = 2000, holdout: int = 0, noise: float = 0.15, seed: int = 0,
    workload_id: str = "news_topic", client_id: str = "desk-1", model: str = DEFAULT_TEACHER,
    start_timestamp: int = DEFAULT_START_TS, noise_focus: float = 3.0,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """(logs, held-out later traffic, summary): `records` + `holdout` distinct headlines of the train file,
    sampled with `seed`, each answered by the simulated teacher. Held-out records come after the logs in time.
    `noise_focus`: how strongly the wrong answers fall on ambiguous texts (0: uniformly at random). The default,
    3, is the least at which a student fitted on the logs agrees with the teacher as often as with the humans,
    as on the real logs this stands in for (a greedy teacher errs the same way on the same kind of text); at
    1.5 its errors are mostly unlearnable noise (docs/benchmarks.md, "Which stand-in")."""
    labels, rows = _rows(folder, "train")
    if records + holdout > len(rows):
        raise ValueError(f"asked for {records + holdout} records; the source has {len(rows)}")
    texts, gold = [t for t, _ in rows], [y for _, y in rows]
    confused, ambiguity = confusable_labels(texts, gold, seed=seed)
    rng = random.Random(seed)
    chosen = rng.sample(range(len(rows)), records + holdout)
    noisy = _ambiguous_sample(chosen, ambiguity, round(noise * len(chosen)), rng, sharpness=noise_focus)
    system = long_system_prompt(folder)
    logs = []
    for i, index in enumerate(chosen):
        answer = confused[index] if index in noisy else gold[index]
        logs.append(to_log_record(Example(texts[index], format_label(labels[answer])), system_prompt=system,
                                  workload_id=workload_id, client_id=client_id, timestamp=start_timestamp + 60 * i,
                                  model=model))
    summary = {"records": records, "holdout": holdout, "noise": noise, "seed": seed, "labels": len(labels),
               "teacher_vs_human_agreement": round(1 - len(noisy) / len(chosen), 4),
               "noise_on": "confusable texts, by weight (a teacher errs where the text is ambiguous)",
               "noise_focus": noise_focus,
               "system_prompt_chars": len(system), "workload_id": workload_id}
    return logs[:records], logs[records:], summary


def _ambiguous_sample(chosen: list[int], ambiguity: list[float], k: int, rng: random.Random,
                      sharpness: float = 1.5) -> set[int]:
    """`k` of `chosen`, drawn without replacement with weight exp(sharpness * standardized ambiguity)
    (Efraimidis-Spirakis keys): the teacher mostly errs on confusable texts, sometimes on clear ones."""
    import math

    values = [ambiguity[i] for i in chosen]
    mean = sum(values) / len(values)
    spread = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5 or 1.0
    keys = [(rng.random() ** (1 / math.exp(sharpness * (v - mean) / spread)), i) for v, i in zip(values, chosen, strict=True)]
    return {i for _, i in sorted(keys, reverse=True)[:k]}
