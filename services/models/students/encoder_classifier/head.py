"""`finetune: head` for encoder classifiers: the pretrained sentence encoder stays frozen and a
class-balanced logistic-regression head is fitted on its normalized mean-pooled vectors.

Why it is the default (bench/learning_curve, docs/benchmarks.md): with a few hundred to a few
thousand teacher labels the frozen sentence space of all-MiniLM / all-mpnet separates finance topics
better than a short fine-tune moves it, at a fraction of the CPU time (one encoding pass, then
seconds of convex fitting), with no epochs to tune. The head is a plain linear layer, so the saved
student is the same `MeanPoolClassifier` the gateway already serves.

Cross-fitting: the regularization strength is chosen by 5-fold out-of-fold macro-F1 on the training
records, and the chosen fit's out-of-fold probabilities are kept (`calibration.json`): every record
is scored by a head that never saw it, so the selective threshold can be chosen on them and the
guarantee reported on the untouched eval split (services/evaluator/metrics/selective.py).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import torch

from services.domain.artifacts import TrainingProgress
from services.domain.errors import TrainingCancelled
from services.models.runtime.threads import rebalance
from services.models.students.encoder_classifier.runtime import confidence_of, mean_pool

log = logging.getLogger(__name__)
C_GRID = (1.0, 4.0, 16.0)
LEXICAL_C = 16.0  # TF-IDF features are sparse and many: weak regularization (bench/selective)
FOLDS = 5
# C chosen on a sample of at most this many records (None: on every record). Off by default: at 10k records the
# sample chose a smaller C and lost 0.022 out-of-fold macro-F1 (bench/head_fit.py, docs/benchmarks.md).
GRID_RECORDS: int | None = None


@torch.inference_mode()
def encode(encoder: torch.nn.Module, tokenizer: Any, texts: list[str], *, max_length: int, batch_size: int = 64,
           on_batch: Callable[[int], None] | None = None) -> np.ndarray:
    """Normalized mean-pooled vectors, shortest texts batched together (less padding)."""
    encoder.eval()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), int(encoder.config.hidden_size)), dtype=np.float32)  # type: ignore[union-attr, arg-type]  # a Module attribute, typed loosely by torch
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        batch = tokenizer([texts[i] for i in rows], padding=True, truncation=True, max_length=max_length,
                          return_tensors="pt")
        hidden = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        pooled = torch.nn.functional.normalize(mean_pool(hidden, batch["attention_mask"]), dim=-1)
        out[rows] = pooled.float().numpy()
        rebalance()  # a training that started beside this one gets its share of the cores
        if on_batch is not None:
            on_batch(min(start + batch_size, len(order)))
    return out


def fit_head(vectors: np.ndarray, targets: np.ndarray, num_labels: int, *, seed: int,
             texts: list[str] | None = None, lexical_mix: float = 0.0,
             extra: tuple[np.ndarray, np.ndarray, list[str]] | None = None,
             grid_records: int | None = GRID_RECORDS) -> dict[str, Any]:
    """Choose C by out-of-fold macro-F1, fit on everything; return weights (num_labels x d), bias and the
    chosen fit's out-of-fold confidence/correctness per record. With `texts` and `lexical_mix` > 0, a TF-IDF
    head is fitted beside it (same folds) and the out-of-fold figures are those of the averaged ensemble.
    `extra` (vectors, targets, texts) are labelled examples that are not logged records (the class definitions
    of the teacher's prompt): in every fit, never scored out of fold. With more than `grid_records` records, C is
    chosen on a stratified sample of that many and only the chosen C is cross-fitted on all of them (faster, but
    the best C grows with the records: bench/head_fit.py)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(targets, minlength=num_labels)
    folds = max(2, min(FOLDS, int(counts[counts > 0].min())))
    # Classes rarer than the fold count cannot be stratified; sklearn warns and still splits: fine here.
    splits = list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(vectors, targets))
    extra_vectors, extra_targets, extra_texts = extra if extra is not None else (
        np.zeros((0, vectors.shape[1]), dtype=vectors.dtype), np.zeros(0, dtype=targets.dtype), [])

    def make(c: float) -> Any:
        return LogisticRegression(C=c, class_weight="balanced", max_iter=2000)

    def f1(probs: np.ndarray) -> float:
        return float(f1_score(targets, probs.argmax(axis=1), average="macro"))

    if grid_records is not None and len(targets) > grid_records:
        c = _choose_c(vectors, targets, num_labels, seed=seed, sample=grid_records, make=make,
                      extra=(extra_vectors, extra_targets))
        oof = _cross_fit(partial(make, c), vectors, targets, splits, num_labels, extra_vectors, extra_targets)
        score = f1(oof)
    else:
        best: tuple[float, float, np.ndarray] | None = None
        for c in C_GRID:
            oof = _cross_fit(partial(make, c), vectors, targets, splits, num_labels, extra_vectors, extra_targets)
            log.info("head C=%s: out-of-fold macro-F1 %.3f", c, f1(oof))
            if best is None or f1(oof) > best[0]:
                best = (f1(oof), c, oof)
        assert best is not None
        score, c, oof = best
    model = make(c).fit(_stack(vectors, extra_vectors), np.concatenate([targets, extra_targets]))
    weight, bias = _full_head(model, num_labels, vectors.shape[1])
    out: dict[str, Any] = {"weight": weight, "bias": bias, "C": c, "oof_macro_f1": score, "folds": folds,
                           "encoder_oof_macro_f1": score, "extra_examples": len(extra_targets)}
    if texts is not None and lexical_mix > 0:
        from services.models.students.encoder_classifier.lexical import LexicalHead, vectorizer

        features = vectorizer()
        matrix = features.fit_transform(texts + extra_texts)  # the vocabulary includes the prompt's words
        rows, extra_rows = matrix[:len(texts)], matrix[len(texts):]
        lexical_oof = _cross_fit(partial(make, LEXICAL_C), rows, targets, splits, num_labels, extra_rows, extra_targets)
        oof = (1 - lexical_mix) * oof + lexical_mix * lexical_oof
        lexical = make(LEXICAL_C).fit(matrix, np.concatenate([targets, extra_targets]))
        lexical_weight, lexical_bias = _full_head(lexical, num_labels, matrix.shape[1])
        out["lexical"] = LexicalHead(features.vocabulary_, features.idf_.astype(np.float32), lexical_weight,
                                     lexical_bias, lexical_mix)
        out["lexical_oof_macro_f1"] = f1(lexical_oof)
        out["oof_macro_f1"] = f1(oof)
        out["vocabulary"] = len(features.vocabulary_)
    out["oof_confidence"] = confidence_of(oof).tolist()
    out["oof_probs"] = oof  # (records x labels): other confidences than the default are derived from it (bench)
    out["oof_correct"] = (oof.argmax(axis=1) == targets).tolist()
    return out


def _choose_c(vectors: np.ndarray, targets: np.ndarray, num_labels: int, *, seed: int, sample: int,
              make: Callable[[float], Any], extra: tuple[np.ndarray, np.ndarray]) -> float:
    """The C of the grid with the best out-of-fold macro-F1 on a stratified sample of `sample` records."""
    from sklearn.metrics import f1_score
    from sklearn.model_selection import StratifiedKFold, train_test_split

    counts = np.bincount(targets, minlength=num_labels)
    stratify = targets if counts[counts > 0].min() >= 2 else None
    rows, _ = train_test_split(np.arange(len(targets)), train_size=sample, random_state=seed, stratify=stratify)
    sub_vectors, sub_targets = vectors[rows], targets[rows]
    sub_counts = np.bincount(sub_targets, minlength=num_labels)
    folds = max(2, min(FOLDS, int(sub_counts[sub_counts > 0].min())))
    splits = list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(sub_vectors, sub_targets))
    scores = {}
    for c in C_GRID:
        oof = _cross_fit(partial(make, c), sub_vectors, sub_targets, splits, num_labels, *extra)
        scores[c] = float(f1_score(sub_targets, oof.argmax(axis=1), average="macro"))
        log.info("head C=%s: out-of-fold macro-F1 %.3f on a sample of %d records", c, scores[c], sample)
    return max(scores, key=lambda c: scores[c])


def _stack(rows: Any, extra: Any) -> Any:
    if extra.shape[0] == 0:
        return rows
    if hasattr(rows, "tocsr"):
        from scipy.sparse import vstack

        return vstack([rows, extra]).tocsr()
    return np.vstack([rows, extra])


def _cross_fit(make: Callable[[], Any], rows: Any, targets: np.ndarray, splits: list[tuple[np.ndarray, np.ndarray]],
               num_labels: int, extra_rows: Any, extra_targets: np.ndarray) -> np.ndarray:
    """Out-of-fold probabilities over the whole label list (n x num_labels): each record scored by a model fitted
    on the other folds (plus the extra examples)."""
    oof = np.zeros((len(targets), num_labels), dtype=np.float64)
    for fit_rows, held in splits:
        model = make().fit(_stack(rows[fit_rows], extra_rows), np.concatenate([targets[fit_rows], extra_targets]))
        oof[np.ix_(held, model.classes_)] = model.predict_proba(rows[held])
    return oof


def _full_head(model: Any, num_labels: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A fitted LR's weights over the student's whole label list (a label never seen in training: never predicted)."""
    weight = np.zeros((num_labels, width), dtype=np.float32)
    bias = np.full(num_labels, -1e4, dtype=np.float32)
    weight[model.classes_] = model.coef_
    bias[model.classes_] = model.intercept_
    return weight, bias


def prompt_examples(system: str, labels: list[str]) -> list[tuple[str, str]]:
    """Labelled examples the teacher's own prompt holds: a line that starts (after a bullet) with a label and a
    colon defines it; its text is one example and every quoted string in it another. "- Dividend: payouts.
    Examples: "Acme raises its dividend"" gives ("payouts. Examples: ...", Dividend) and ("Acme raises ...",
    Dividend). Lines naming no label, or inside an answer format ([[[label]]]), give nothing."""
    by_length = sorted(labels, key=len, reverse=True)  # "Stock Movement" before "Stock"
    found: list[tuple[str, str]] = []
    for line in system.splitlines():
        body = re.sub(r"^\s*(?:[-*•]|\d+[.)])?\s*", "", line)
        label = next((name for name in by_length if body.startswith(name) and body[len(name):].lstrip().startswith(":")),
                     None)
        if label is None:
            continue
        rest = body[len(label):].lstrip()[1:].strip()
        quoted = re.findall(r'"([^"]{8,})"', rest)
        definition = rest.split("Examples:")[0].strip(" .") if quoted else rest
        found += [(text, label) for text in ([definition] if definition else []) + quoted]
    return found


def train_head(model: Any, tokenizer: Any, texts: list[str], targets: list[int], *, candidate: str, max_length: int,
               seed: int, on_progress: Callable[[TrainingProgress], None] | None,
               should_cancel: Callable[[], bool] | None, lexical_mix: float = 0.0,
               extra: list[tuple[str, int]] | None = None) -> dict[str, Any]:
    """Encode, fit, and set `model.head` in place; returns metrics (and the calibration records)."""
    started = time.perf_counter()
    total = len(texts)

    def on_batch(done: int) -> None:
        if should_cancel is not None and should_cancel():
            raise TrainingCancelled(f"{candidate}: cancelled while encoding")
        if on_progress is not None:
            elapsed = time.perf_counter() - started
            # The last step is the fit (cross-fitted, a few C values): no honest ETA for it, so none once encoded.
            on_progress(TrainingProgress(candidate=candidate, step=done, max_steps=total + 1, epoch=0.0,
                                         examples_per_s=done / max(elapsed, 1e-9), elapsed_s=elapsed,
                                         eta_s=(total - done) * elapsed / max(done, 1) if done < total else None))

    vectors = encode(model.encoder, tokenizer, texts, max_length=max_length, on_batch=on_batch)
    encode_s = time.perf_counter() - started
    extra_fit = None
    if extra:
        extra_texts = [text for text, _ in extra]
        extra_fit = (encode(model.encoder, tokenizer, extra_texts, max_length=max_length),
                     np.asarray([target for _, target in extra]), extra_texts)
    fitted = fit_head(vectors, np.asarray(targets), model.head.out_features, seed=seed, texts=texts,
                      lexical_mix=lexical_mix, extra=extra_fit)
    with torch.no_grad():
        model.head.weight.copy_(torch.from_numpy(fitted["weight"]))
        model.head.bias.copy_(torch.from_numpy(fitted["bias"]))
    model.normalize = True
    elapsed = time.perf_counter() - started
    if on_progress is not None:
        on_progress(TrainingProgress(candidate=candidate, step=total + 1, max_steps=total + 1, epoch=1.0,
                                     examples_per_s=total / max(elapsed, 1e-9), elapsed_s=elapsed, eta_s=0.0))
    return {"head": "logistic_regression" + ("+tfidf" if "lexical" in fitted else ""), "lexical": fitted.get("lexical"),
            "lexical_mix": lexical_mix if "lexical" in fitted else 0.0,
            "encoder_oof_macro_f1": round(fitted["encoder_oof_macro_f1"], 4),
            "lexical_oof_macro_f1": round(fitted["lexical_oof_macro_f1"], 4) if "lexical" in fitted else None,
            "C": fitted["C"], "oof_macro_f1": round(fitted["oof_macro_f1"], 4),
            "prompt_examples": fitted["extra_examples"],
            "folds": fitted["folds"], "encode_seconds": round(encode_s, 2), "train_seconds": round(elapsed, 2),
            "examples_per_s": round(total / max(elapsed, 1e-9), 2), "steps": 1,
            "calibration": {"confidence": [round(x, 6) for x in fitted["oof_confidence"]],
                            "correct": fitted["oof_correct"],
                            "source": "out-of-fold predictions on the training records (cross-fitting)"}}
