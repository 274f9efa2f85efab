"""An embedding student's retrieval quality on a workload's own logged queries, relative to the teacher's.

The eval split's texts are queries or passages (`services.domain.embeddings.input_roles`). Each query
searches the split's passages; with no relevance labels in the logs, the teacher's own top-k passages
are the reference (so the teacher scores 1.0 and the student's nDCG@k is its quality relative to the
teacher's), with k = min(10, passages // 2) so the reference never holds every passage. The headline
is that nDCG, with a bootstrap CI over queries; MRR@5 and Recall@k ride along, and the same at each
Matryoshka size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from services.evaluator.metrics.retrieval import reference_qrels, retrieval_report, top_k, unit_rows

K = 10


def retrieval_vs_teacher(
    teacher: np.ndarray, student: np.ndarray, roles: Sequence[str], *, matryoshka_dims: Sequence[int] = (),
    bootstrap_samples: int = 1000, confidence: float = 0.95, seed: int = 0,
) -> dict[str, Any] | None:
    """Retrieval of the logged queries over the logged passages against the teacher's top-k; None when the
    split holds no query or fewer than 2 passages (the caller falls back to neighbour agreement)."""
    if len(roles) != len(teacher) or len(roles) != len(student):
        raise ValueError(f"{len(roles)} roles for {len(teacher)} teacher and {len(student)} student vectors")
    queries = [i for i, role in enumerate(roles) if role == "query"]
    passages = [i for i, role in enumerate(roles) if role == "passage"]
    if not queries or len(passages) < 2:
        return None
    k_ref = min(K, max(1, len(passages) // 2))
    t = unit_rows(np.asarray(teacher, dtype=np.float64))
    qrels = reference_qrels(top_k(t[queries], t[passages], k_ref))
    ks = {"mrr": 5, "ndcg": K, "recall": K}

    def report_at(dims: int | None, samples: int) -> dict[str, Any]:
        s = np.asarray(student, dtype=np.float64)[:, :dims] if dims else np.asarray(student, dtype=np.float64)
        s = unit_rows(s)
        rankings = [list(map(int, row)) for row in top_k(s[queries], s[passages], K)]
        return retrieval_report(rankings, qrels, ks=ks, bootstrap_samples=samples, confidence=confidence, seed=seed)

    full = report_at(None, bootstrap_samples)
    dim = int(np.asarray(student).shape[1])
    return {
        "reference": f"teacher top-{k_ref}", "queries": len(queries), "passages": len(passages), **full,
        "score": full[f"ndcg_at_{K}"], "score_ci": full[f"ndcg_at_{K}_ci"],
        "matryoshka": {str(d): report_at(d, 0) for d in sorted(set(matryoshka_dims)) if 0 < d < dim},
    }
