"""The frozen-encoder head's fitting time as the records grow: C chosen on every record against C chosen on a sample.

    python -m bench.head_fit [--sizes 2000 5000 10000] [--model minilm-l6] [--grid-records 3000]

The default classification student (`finetune: head`) encodes the training records once, then fits a
class-balanced logistic regression: C is chosen from a small grid by 5-fold out-of-fold macro-F1, and the
chosen C's out-of-fold probabilities are the selective plan's calibration records. On all records the grid
costs (grid size x folds) fits; the option measured against it (`fit_head(grid_records=N)`) chooses C on a
stratified sample of N records and cross-fits only the chosen C on all records. Both run here on the same vectors (Twitter topic
headlines, human labels, encoded once with `--model` and cached under ~/.cache/flywheel/bench): fit
seconds, the C each chose, and out-of-fold macro-F1 of the chosen fit. The TF-IDF half of the default
ensemble is left out: its C is fixed, so it has no grid. Prints a table; writes bench/results/head_fit.json.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import REPO, machine, print_table, write_results

DATA = REPO / "data" / "twitter_financial_news_topic" / "topic_train.csv"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "flywheel" / "bench"


def load(n: int) -> tuple[list[str], np.ndarray]:
    with open(DATA, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    rng = np.random.default_rng(0)
    chosen = rng.permutation(len(rows))[:n]
    return [rows[i]["text"] for i in chosen], np.asarray([int(rows[i]["label"]) for i in chosen])


def vectors_for(texts: list[str], model_name: str) -> np.ndarray:
    """The texts' vectors, encoded once and cached (the encoding is not what this bench measures)."""
    import hashlib

    key = hashlib.sha256(("\n".join(texts) + model_name).encode()).hexdigest()[:16]
    path = CACHE / f"head_fit-{model_name}-{len(texts)}-{key}.npy"
    if path.exists():
        return np.load(path)
    from transformers import AutoModel, AutoTokenizer

    from services.domain.settings import default_models_dir
    from services.models.students.encoder_classifier.head import encode

    directory = str(default_models_dir() / model_name)
    print(f"encoding {len(texts)} texts with {model_name} (cached afterwards)", file=sys.stderr, flush=True)
    vectors = encode(AutoModel.from_pretrained(directory), AutoTokenizer.from_pretrained(directory), texts,
                     max_length=64)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 5000, 10000])
    parser.add_argument("--model", default="minilm-l6")
    parser.add_argument("--grid-records", type=int, default=3000, help="the sample C is chosen on in the second arm")
    args = parser.parse_args()
    from services.models.students.encoder_classifier.head import fit_head

    grid_records = args.grid_records
    texts, labels = load(max(args.sizes))
    vectors = vectors_for(texts, args.model)
    rows: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    for size in sorted(args.sizes):
        for arm, grid in (("grid on every record (default)", None), (f"grid on a sample of {grid_records}", grid_records)):
            started = time.perf_counter()
            fitted = fit_head(vectors[:size], labels[:size], int(labels.max()) + 1, seed=0, grid_records=grid)
            seconds = time.perf_counter() - started
            rows.append({"records": size, "arm": arm, "fit s": round(seconds, 1), "C": fitted["C"],
                         "oof macro-F1": round(fitted["oof_macro_f1"], 4)})
            print(rows[-1], file=sys.stderr, flush=True)
    print_table(rows)
    write_results("head_fit", {"machine": machine(), "args": vars(args), "grid_records": grid_records,
                               "load_before": load_before, "load_after": os.getloadavg(), "rows": rows})


if __name__ == "__main__":
    main()
