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
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from services.domain.artifacts import TrainingProgress
from services.domain.errors import TrainingCancelled
from services.models.runtime.classifier import mean_pool

log = logging.getLogger(__name__)
C_GRID = (1.0, 4.0, 16.0)
FOLDS = 5


@torch.inference_mode()
def encode(encoder: torch.nn.Module, tokenizer: Any, texts: list[str], *, max_length: int, batch_size: int = 64,
           on_batch: Callable[[int], None] | None = None) -> np.ndarray:
    """Normalized mean-pooled vectors, shortest texts batched together (less padding)."""
    encoder.eval()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), int(encoder.config.hidden_size)), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        batch = tokenizer([texts[i] for i in rows], padding=True, truncation=True, max_length=max_length,
                          return_tensors="pt")
        hidden = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        pooled = torch.nn.functional.normalize(mean_pool(hidden, batch["attention_mask"]), dim=-1)
        out[rows] = pooled.float().numpy()
        if on_batch is not None:
            on_batch(min(start + batch_size, len(order)))
    return out


def fit_head(vectors: np.ndarray, targets: np.ndarray, num_labels: int, *, seed: int) -> dict[str, Any]:
    """Choose C by out-of-fold macro-F1, fit on everything; return weights (num_labels x d), bias and the
    chosen fit's out-of-fold confidence/correctness per record."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    counts = np.bincount(targets, minlength=num_labels)
    folds = max(2, min(FOLDS, int(counts[counts > 0].min())))
    # Classes rarer than the fold count cannot be stratified; sklearn warns and still splits: fine here.
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    best: tuple[float, float, np.ndarray] | None = None
    for c in C_GRID:
        model = LogisticRegression(C=c, class_weight="balanced", max_iter=2000)
        oof = cross_val_predict(model, vectors, targets, cv=splitter, method="predict_proba")
        present = np.unique(targets)
        predicted = present[oof.argmax(axis=1)]
        score = f1_score(targets, predicted, average="macro")
        log.info("head C=%s: out-of-fold macro-F1 %.3f", c, score)
        if best is None or score > best[0]:
            best = (score, c, oof)
    assert best is not None
    score, c, oof = best
    model = LogisticRegression(C=c, class_weight="balanced", max_iter=2000).fit(vectors, targets)
    weight = np.zeros((num_labels, vectors.shape[1]), dtype=np.float32)
    bias = np.full(num_labels, -1e4, dtype=np.float32)  # a label never seen in training is never predicted
    weight[model.classes_] = model.coef_
    bias[model.classes_] = model.intercept_
    present = np.unique(targets)
    return {"weight": weight, "bias": bias, "C": c, "oof_macro_f1": float(score), "folds": folds,
            "oof_confidence": oof.max(axis=1).tolist(),
            "oof_correct": (present[oof.argmax(axis=1)] == targets).tolist()}


def train_head(model: Any, tokenizer: Any, texts: list[str], targets: list[int], *, candidate: str, max_length: int,
               seed: int, on_progress: Callable[[TrainingProgress], None] | None,
               should_cancel: Callable[[], bool] | None) -> dict[str, Any]:
    """Encode, fit, and set `model.head` in place; returns metrics (and the calibration records)."""
    started = time.perf_counter()
    total = len(texts)

    def on_batch(done: int) -> None:
        if should_cancel is not None and should_cancel():
            raise TrainingCancelled(f"{candidate}: cancelled while encoding")
        if on_progress is not None:
            elapsed = time.perf_counter() - started
            on_progress(TrainingProgress(candidate=candidate, step=done, max_steps=total + 1, epoch=0.0,
                                         examples_per_s=done / max(elapsed, 1e-9), elapsed_s=elapsed,
                                         eta_s=(total - done) * elapsed / max(done, 1)))

    vectors = encode(model.encoder, tokenizer, texts, max_length=max_length, on_batch=on_batch)
    encode_s = time.perf_counter() - started
    fitted = fit_head(vectors, np.asarray(targets), model.head.out_features, seed=seed)
    with torch.no_grad():
        model.head.weight.copy_(torch.from_numpy(fitted["weight"]))
        model.head.bias.copy_(torch.from_numpy(fitted["bias"]))
    model.normalize = True
    elapsed = time.perf_counter() - started
    if on_progress is not None:
        on_progress(TrainingProgress(candidate=candidate, step=total + 1, max_steps=total + 1, epoch=1.0,
                                     examples_per_s=total / max(elapsed, 1e-9), elapsed_s=elapsed, eta_s=0.0))
    return {"head": "logistic_regression", "C": fitted["C"], "oof_macro_f1": round(fitted["oof_macro_f1"], 4),
            "folds": fitted["folds"], "encode_seconds": round(encode_s, 2), "train_seconds": round(elapsed, 2),
            "examples_per_s": round(total / max(elapsed, 1e-9), 2), "steps": 1,
            "calibration": {"confidence": [round(x, 6) for x in fitted["oof_confidence"]],
                            "correct": fitted["oof_correct"]}}
