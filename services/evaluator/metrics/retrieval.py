"""Retrieval metrics against labelled relevance: MRR@k, nDCG@k and Recall@k per query, with bootstrap CIs.

A query's relevance labels (`qrels`) map document ids to gains (> 0 relevant; graded gains count in
nDCG, any gain >= `min_gain` counts as relevant for MRR and Recall). A system's answer to a query is
a ranking: document ids, best first. Where no labels exist, the teacher's own top-k serves as the
reference (`reference_qrels`), which makes the teacher score 1.0 by construction.

Every metric is computed per query, so the bootstrap resamples queries (the unit that varies), and a
paired bootstrap of the per-query difference compares two systems on the same queries.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from services.domain.errors import InsufficientData
from services.evaluator.metrics.bootstrap import bootstrap_mean, percentile_interval, resample_indices

Qrels = Mapping[Any, float]  # document id -> gain (Mapping is invariant in its key: any hashable id)
DEFAULT_KS = {"mrr": 5, "ndcg": 10, "recall": 10}


def reciprocal_rank(ranking: Sequence[Hashable], qrels: Qrels, k: int, *, min_gain: float = 1e-12) -> float:
    """1 / rank of the first relevant document within the top k, else 0."""
    for rank, doc in enumerate(ranking[:k], start=1):
        if qrels.get(doc, 0.0) >= min_gain:
            return 1.0 / rank
    return 0.0


def recall(ranking: Sequence[Hashable], qrels: Qrels, k: int, *, min_gain: float = 1e-12) -> float:
    """Share of the relevant documents found in the top k (nan when the query has none)."""
    relevant = {doc for doc, gain in qrels.items() if gain >= min_gain}
    if not relevant:
        return float("nan")
    return len(relevant.intersection(ranking[:k])) / len(relevant)


def ndcg(ranking: Sequence[Hashable], qrels: Qrels, k: int) -> float:
    """Normalised DCG@k with linear gains (gain / log2(rank + 1)); nan when the query has no positive gain."""
    ideal_gains = sorted((g for g in qrels.values() if g > 0), reverse=True)[:k]
    if not ideal_gains:
        return float("nan")
    ideal = sum(g / math.log2(r + 2) for r, g in enumerate(ideal_gains))
    dcg = sum(qrels.get(doc, 0.0) / math.log2(r + 2) for r, doc in enumerate(ranking[:k]) if qrels.get(doc, 0.0) > 0)
    return dcg / ideal


def per_query(
    rankings: Sequence[Sequence[Hashable]], qrels: Sequence[Qrels], *, ks: Mapping[str, int] = DEFAULT_KS,
    min_gain: float = 1e-12,
) -> dict[str, np.ndarray]:
    """`mrr_at_K`, `ndcg_at_K`, `recall_at_K` for every query (arrays aligned with the queries)."""
    if len(rankings) != len(qrels):
        raise ValueError(f"{len(rankings)} rankings but {len(qrels)} label sets")
    k_mrr, k_ndcg, k_recall = ks["mrr"], ks["ndcg"], ks["recall"]
    return {
        f"mrr_at_{k_mrr}": np.array([reciprocal_rank(r, q, k_mrr, min_gain=min_gain) for r, q in zip(rankings, qrels, strict=True)]),
        f"ndcg_at_{k_ndcg}": np.array([ndcg(r, q, k_ndcg) for r, q in zip(rankings, qrels, strict=True)]),
        f"recall_at_{k_recall}": np.array([recall(r, q, k_recall, min_gain=min_gain) for r, q in zip(rankings, qrels, strict=True)]),
    }


def retrieval_report(
    rankings: Sequence[Sequence[Hashable]], qrels: Sequence[Qrels], *, ks: Mapping[str, int] = DEFAULT_KS,
    min_gain: float = 1e-12, bootstrap_samples: int = 1000, confidence: float = 0.95, seed: int = 0,
) -> dict[str, Any]:
    """Mean of each metric over the queries with relevant documents, a bootstrap CI for each, and `n`."""
    values = per_query(rankings, qrels, ks=ks, min_gain=min_gain)
    keep = np.isfinite(values[f"ndcg_at_{ks['ndcg']}"])
    if not keep.any():
        raise InsufficientData("no query has a relevant document: nothing to score")
    report: dict[str, Any] = {"n": int(keep.sum()), "skipped_queries": int((~keep).sum())}
    for name, array in values.items():
        kept = array[keep]
        report[name] = float(np.nanmean(kept))
        ci = bootstrap_mean(kept[np.isfinite(kept)], samples=bootstrap_samples, confidence=confidence, seed=seed)
        report[f"{name}_ci"] = list(ci) if ci is not None else None
    return report


def paired_bootstrap(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, *, samples: int = 1000,
    confidence: float = 0.95, seed: int = 0,
) -> dict[str, Any]:
    """mean(a - b) over paired queries, its bootstrap CI, and the share of replicates <= 0 (a one-sided p)."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if diff.ndim != 1 or diff.size == 0:
        raise InsufficientData("a paired bootstrap needs two equally long, non-empty lists of per-query values")
    diff = diff[np.isfinite(diff)]
    replicates = np.concatenate([diff[idx].mean(axis=1) for idx in resample_indices(diff.size, samples, seed=seed)]) \
        if samples > 0 and diff.size else diff[:0]
    ci = percentile_interval(replicates, confidence) if replicates.size else None
    return {"mean_diff": float(diff.mean()) if diff.size else float("nan"), "ci": list(ci) if ci is not None else None,
            "p_not_above_zero": float((replicates <= 0).mean()) if replicates.size else None, "n": int(diff.size)}


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Each row scaled to length 1 (an all-zero row stays zero), for cosine similarity as a dot product."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit: np.ndarray = matrix / np.where(norms > 0, norms, 1.0)
    return unit


def top_k(queries: np.ndarray, corpus: np.ndarray, k: int, *, chunk: int = 256) -> np.ndarray:
    """Indices of the k most similar corpus rows per query (dot product: pass unit rows for cosine), best first."""
    k = min(k, corpus.shape[0])
    out = np.empty((queries.shape[0], k), dtype=np.int64)
    for start in range(0, queries.shape[0], chunk):
        sims = queries[start:start + chunk] @ corpus.T
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.lexsort((part, -np.take_along_axis(sims, part, axis=1)), axis=1)
        out[start:start + chunk] = np.take_along_axis(part, order, axis=1)
    return out


def reference_qrels(reference_top: np.ndarray) -> list[dict[Any, float]]:
    """Relevance labels from a reference system's rankings (the teacher's top-k): each listed document gain 1."""
    return [{int(doc): 1.0 for doc in row} for row in reference_top]
