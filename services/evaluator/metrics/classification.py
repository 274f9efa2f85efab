"""Classification metrics with the teacher's labels as the reference.

`f1_vs_teacher` is macro F1 over the label set the teacher uses in the eval set: an unparseable
student answer (None) is wrong and adds no class, and a label the teacher never used is wrong and
adds no class either, so a student cannot move the average by inventing labels. `macro_f1` is the
ordinary macro F1 over every label seen on either side (hallucinated labels then count as extra
zero-F1 classes); both are reported so the difference is visible.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from services.evaluator.metrics.bootstrap import bootstrap_statistic, require_aligned


def _f1(tp: np.ndarray, n_pred: np.ndarray, n_true: np.ndarray) -> np.ndarray:
    # F1 = 2tp / (2tp + fp + fn) = 2tp / (n_pred + n_true); 0 where the class never appears (sklearn's zero_division=0).
    denom = n_pred + n_true
    f1: np.ndarray = np.divide(2.0 * tp, denom, out=np.zeros(np.broadcast(tp, denom).shape), where=denom > 0)
    return f1


def _safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    ratio: np.ndarray = np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)
    return ratio


def _bootstrap_f1_vs_teacher(
    ref_codes: np.ndarray,
    pred_codes: np.ndarray,
    n_classes: int,
    *,
    samples: int,
    confidence: float,
    seed: int,
) -> tuple[float, float] | None:
    """Percentile CI of f1_vs_teacher; codes are 0..K-1 for teacher labels, K for anything else."""
    width = n_classes + 1  # one spare bucket for "not a teacher label / unparseable"

    def statistic(idx: np.ndarray) -> np.ndarray:
        rows = idx.shape[0]
        ref = ref_codes[idx]
        pred = pred_codes[idx]
        offset = (np.arange(rows) * width)[:, None]
        # One bincount per quantity over all replicates at once: row b's counts live at b*width + code.
        n_true = np.bincount((offset + ref).ravel(), minlength=rows * width).reshape(rows, width)
        n_pred = np.bincount((offset + pred).ravel(), minlength=rows * width).reshape(rows, width)
        hits = np.where(ref == pred, offset + ref, -1).ravel()
        tp = np.bincount(hits[hits >= 0], minlength=rows * width).reshape(rows, width)
        f1 = _f1(tp[:, :n_classes], n_pred[:, :n_classes], n_true[:, :n_classes])
        # The macro average runs over the classes the teacher uses in this resample.
        present = n_true[:, :n_classes] > 0
        macro: np.ndarray = (f1 * present).sum(axis=1) / present.sum(axis=1)
        return macro

    return bootstrap_statistic(ref_codes.size, statistic, samples=samples, confidence=confidence, seed=seed)


def classification_report(
    reference: Sequence[str],
    predicted: Sequence[str | None],
    *,
    bootstrap_samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Accuracy, macro/weighted F1, per-class scores, confusion matrix and f1_vs_teacher with a bootstrap CI."""
    require_aligned(reference, predicted)

    teacher_labels = sorted(set(reference))
    extra_labels = sorted({p for p in predicted if p is not None} - set(teacher_labels))
    labels = teacher_labels + extra_labels
    index = {label: i for i, label in enumerate(labels)}
    n_all = len(labels)
    unparseable_code = n_all

    ref_codes = np.fromiter((index[r] for r in reference), dtype=np.int64, count=len(reference))
    pred_codes = np.fromiter(
        (unparseable_code if p is None else index[p] for p in predicted), dtype=np.int64, count=len(predicted)
    )

    # Rows: the teacher's label; columns: the student's label, plus a last column for unparseable answers.
    counts = np.zeros((n_all, n_all + 1), dtype=np.int64)
    np.add.at(counts, (ref_codes, pred_codes), 1)
    matrix = counts[:, :n_all]
    tp = np.diag(matrix).astype(np.float64)
    n_true = counts.sum(axis=1).astype(np.float64)
    n_pred = matrix.sum(axis=0).astype(np.float64)

    precision = _safe_ratio(tp, n_pred)
    recall = _safe_ratio(tp, n_true)
    f1 = _f1(tp, n_pred, n_true)
    k = len(teacher_labels)
    f1_vs_teacher = float(f1[:k].mean())
    support = n_true[:k]

    teacher_codes = np.where(pred_codes < k, pred_codes, k)  # out-of-set and unparseable share the spare bucket
    ci = _bootstrap_f1_vs_teacher(
        ref_codes, teacher_codes, k, samples=bootstrap_samples, confidence=confidence, seed=seed
    )
    return {
        "n": len(reference),
        "unparseable": int(counts[:, n_all].sum()),
        "out_of_set": int(sum(n_pred[k:])),
        "accuracy": float(tp.sum() / len(reference)),
        "macro_f1": float(f1.mean()),
        "weighted_f1": float((f1[:k] * support).sum() / support.sum()),
        "f1_vs_teacher": f1_vs_teacher,
        "f1_vs_teacher_ci": list(ci) if ci is not None else None,
        "labels": teacher_labels,
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(n_true[i]),
            }
            for i, label in enumerate(teacher_labels)
        },
        "confusion": {
            "labels": labels,
            "matrix": matrix.tolist(),
            "unparseable": counts[:, n_all].tolist(),
        },
    }
