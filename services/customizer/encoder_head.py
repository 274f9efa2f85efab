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
LEXICAL_C = 16.0  # TF-IDF features are sparse and many: weak regularization (bench/selective)
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


def fit_head(vectors: np.ndarray, targets: np.ndarray, num_labels: int, *, seed: int,
             texts: list[str] | None = None, lexical_mix: float = 0.0) -> dict[str, Any]:
    """Choose C by out-of-fold macro-F1, fit on everything; return weights (num_labels x d), bias and the
    chosen fit's out-of-fold confidence/correctness per record. With `texts` and `lexical_mix` > 0, a TF-IDF
    head is fitted beside it (same folds) and the out-of-fold figures are those of the averaged ensemble."""
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
    weight, bias = _full_head(model, num_labels, vectors.shape[1])
    present = np.unique(targets)
    out: dict[str, Any] = {"weight": weight, "bias": bias, "C": c, "oof_macro_f1": float(score), "folds": folds,
                           "encoder_oof_macro_f1": float(score)}
    if texts is not None and lexical_mix > 0:
        from services.models.runtime.lexical import LexicalHead, vectorizer

        features = vectorizer()
        matrix = features.fit_transform(texts)
        lexical = LogisticRegression(C=LEXICAL_C, class_weight="balanced", max_iter=2000)
        lexical_oof = cross_val_predict(lexical, matrix, targets, cv=splitter, method="predict_proba")
        oof = (1 - lexical_mix) * oof + lexical_mix * lexical_oof
        lexical.fit(matrix, targets)
        lexical_weight, lexical_bias = _full_head(lexical, num_labels, matrix.shape[1])
        out["lexical"] = LexicalHead(features.vocabulary_, features.idf_.astype(np.float32), lexical_weight,
                                     lexical_bias, lexical_mix)
        out["lexical_oof_macro_f1"] = float(f1_score(targets, present[lexical_oof.argmax(axis=1)], average="macro"))
        out["oof_macro_f1"] = float(f1_score(targets, present[oof.argmax(axis=1)], average="macro"))
        out["vocabulary"] = len(features.vocabulary_)
    out["oof_confidence"] = oof.max(axis=1).tolist()
    out["oof_correct"] = (present[oof.argmax(axis=1)] == targets).tolist()
    return out


def _full_head(model: Any, num_labels: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A fitted LR's weights over the student's whole label list (a label never seen in training: never predicted)."""
    weight = np.zeros((num_labels, width), dtype=np.float32)
    bias = np.full(num_labels, -1e4, dtype=np.float32)
    weight[model.classes_] = model.coef_
    bias[model.classes_] = model.intercept_
    return weight, bias


def train_head(model: Any, tokenizer: Any, texts: list[str], targets: list[int], *, candidate: str, max_length: int,
               seed: int, on_progress: Callable[[TrainingProgress], None] | None,
               should_cancel: Callable[[], bool] | None, lexical_mix: float = 0.0) -> dict[str, Any]:
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
    fitted = fit_head(vectors, np.asarray(targets), model.head.out_features, seed=seed, texts=texts,
                      lexical_mix=lexical_mix)
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
            "folds": fitted["folds"], "encode_seconds": round(encode_s, 2), "train_seconds": round(elapsed, 2),
            "examples_per_s": round(total / max(elapsed, 1e-9), 2), "steps": 1,
            "calibration": {"confidence": [round(x, 6) for x in fitted["oof_confidence"]],
                            "correct": fitted["oof_correct"],
                            "source": "out-of-fold predictions on the training records (cross-fitting)"}}
