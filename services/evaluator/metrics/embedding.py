"""Embedding metrics: does the student's geometry agree with the teacher's on the same texts?

Row i of the teacher matrix T (n x d_t) and of the student matrix S (n x d_s) embed the same text;
the dimensions may differ, since only neighbourhoods are compared. Each text is a query against all
the others (itself excluded). The same metrics are computed at the student's full dimension and at
truncated Matryoshka dimensions (first d dims, re-normalised); the teacher always stays at full size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from services.domain.errors import InsufficientData
from services.evaluator.metrics.bootstrap import bootstrap_mean
from services.evaluator.metrics.retrieval import unit_rows

RECALL_KS = (1, 5, 10)
SCORE_K = 10  # the headline: recall@10 at full dimension
NDCG_K = 10
# Pairwise similarities beyond this many pairs are subsampled (deterministically) for Spearman.
MAX_PAIRS = 200_000
# Query rows per similarity block: bounds memory to _CHUNK x n floats.
_CHUNK = 512


def _similarity_block(unit: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Cosine similarities of queries start..stop to every row, with each query's self set to -inf."""
    sims: np.ndarray = unit[start:stop] @ unit.T
    sims[np.arange(stop - start), np.arange(start, stop)] = -np.inf
    return sims


def _top_k(sims: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest entries per row, best first (ties broken by index, so results are stable)."""
    part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    order = np.lexsort((part, -np.take_along_axis(sims, part, axis=1)), axis=1)
    top: np.ndarray = np.take_along_axis(part, order, axis=1)
    return top


def _per_query(teacher: np.ndarray, student: np.ndarray, ks: Sequence[int]) -> dict[str, np.ndarray]:
    """Per-query recall@k, reciprocal rank of the teacher's top-1 and nDCG@10 (both inputs unit rows)."""
    n = teacher.shape[0]
    k_max = max(max(ks), NDCG_K)
    keys = [f"recall@{k}" for k in ks] + ["rr", f"ndcg@{NDCG_K}"]
    out: dict[str, list[np.ndarray]] = {key: [] for key in keys}
    ndcg_k = min(NDCG_K, n - 1)
    discounts = 1.0 / np.log2(np.arange(2, ndcg_k + 2))
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        t_sims = _similarity_block(teacher, start, stop)
        s_sims = _similarity_block(student, start, stop)
        t_top = _top_k(t_sims, min(k_max, n - 1))
        s_top = _top_k(s_sims, min(k_max, n - 1))
        for k in ks:
            k_eff = min(k, n - 1)
            overlap = (t_top[:, :k_eff, None] == s_top[:, None, :k_eff]).any(axis=2).sum(axis=1)
            out[f"recall@{k}"].append(overlap / k_eff)
        # Rank of the teacher's nearest neighbour among the student's: 1 + how many score strictly higher.
        target = s_sims[np.arange(stop - start), t_top[:, 0]]
        rank = 1 + (s_sims > target[:, None]).sum(axis=1)
        out["rr"].append(1.0 / rank)
        relevant = (s_top[:, :ndcg_k, None] == t_top[:, None, :ndcg_k]).any(axis=2)
        out[f"ndcg@{NDCG_K}"].append((relevant * discounts).sum(axis=1) / discounts.sum())
    return {key: np.concatenate(parts) for key, parts in out.items()}


def _pairs(n: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Upper-triangle pairs (i < j): all of them, or a seeded uniform sample of MAX_PAIRS."""
    total = n * (n - 1) // 2
    if total <= MAX_PAIRS:
        return np.triu_indices(n, k=1)
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, size=MAX_PAIRS)
    j = rng.integers(0, n - 1, size=MAX_PAIRS)
    j = np.where(j >= i, j + 1, j)  # any j != i, then order each pair
    return np.minimum(i, j), np.maximum(i, j)


def _spearman(teacher: np.ndarray, student: np.ndarray, pairs: tuple[np.ndarray, np.ndarray]) -> float:
    i, j = pairs
    t = np.einsum("pd,pd->p", teacher[i], teacher[j])
    s = np.einsum("pd,pd->p", student[i], student[j])
    if np.ptp(t) == 0 or np.ptp(s) == 0:
        return float("nan")  # constant similarities carry no ranking to correlate
    return float(spearmanr(t, s).statistic)


def _summary(
    teacher: np.ndarray, student: np.ndarray, ks: Sequence[int], pairs: tuple[np.ndarray, np.ndarray]
) -> tuple[dict[str, float], np.ndarray]:
    """Mean metrics of one student matrix, and its per-query recall@10 (for the bootstrap)."""
    per_query = _per_query(teacher, student, ks)
    summary = {key: float(values.mean()) for key, values in per_query.items() if key != "rr"}
    summary["mrr"] = float(per_query["rr"].mean())
    summary["spearman"] = _spearman(teacher, student, pairs)
    return summary, per_query[f"recall@{SCORE_K}"]


def embedding_report(
    teacher: np.ndarray,
    student: np.ndarray,
    *,
    matryoshka_dims: Sequence[int] = (),
    ks: Sequence[int] = RECALL_KS,
    bootstrap_samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """recall@k, MRR, nDCG@10 and Spearman of pairwise similarities, full and truncated; score = recall@10."""
    teacher = np.asarray(teacher, dtype=np.float64)
    student = np.asarray(student, dtype=np.float64)
    if teacher.ndim != 2 or student.ndim != 2 or teacher.shape[0] != student.shape[0]:
        raise ValueError(f"need two matrices with the same number of rows, got {teacher.shape} and {student.shape}")
    n, dim = student.shape
    if n < 2:
        raise InsufficientData("need at least 2 texts to compare neighbourhoods")
    ks = sorted(set(ks) | {SCORE_K})
    t_unit = unit_rows(teacher)
    pairs = _pairs(n, seed=seed)
    full, per_query_recall = _summary(t_unit, unit_rows(student), ks, pairs)
    truncated = {
        str(d): _summary(t_unit, unit_rows(student[:, :d]), ks, pairs)[0]
        for d in sorted(set(matryoshka_dims))
        if 0 < d < dim
    }
    ci = bootstrap_mean(per_query_recall, samples=bootstrap_samples, confidence=confidence, seed=seed)
    return {
        "n": n,
        "dim": dim,
        "teacher_dim": teacher.shape[1],
        "neighbours": n - 1,  # recall@k with k > neighbours is computed at k = neighbours
        "pairs": int(pairs[0].size),
        **full,
        "score": float(per_query_recall.mean()),
        "score_ci": list(ci) if ci is not None else None,
        "matryoshka": truncated,
    }
