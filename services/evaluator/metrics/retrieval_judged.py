"""An embedding student's retrieval judged by an LLM: graded labels instead of the teacher's top-k as the truth.

With `evaluation.judge` configured, each logged query's pool (the teacher's top-10 passages and the
student's) is graded 0-3 by the relevance judge (`services/models/students/embedding_distill/relevance.py`),
TREC-style: the pool is what either system would show, so both are scored on the same labels. Both
rankings are scored against those grades (nDCG@10 with the grades as gains; MRR@5 and Recall@10 count
grade >= 2), and the headline is the student's nDCG@10 relative to the teacher's, mean over mean, with a
bootstrap CI over queries. Unlike the teacher's-top-k reference, a student may score above 1 here: it
can find passages the judge finds better than the teacher's. Queries whose pool holds nothing graded
above 0 are left out (no label can tell the two apart there) and counted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from services.evaluator.metrics.bootstrap import bootstrap_statistic
from services.evaluator.metrics.retrieval import per_query, top_k, unit_rows

K = 10
KS = {"mrr": 5, "ndcg": K, "recall": K}
RELEVANT = 2  # the grade from which a passage counts for MRR and recall ("partly answers")

Grader = Callable[[Sequence[tuple[str, str]]], list[int | None]]


def judged_retrieval(teacher: np.ndarray, student: np.ndarray, roles: Sequence[str], texts: Sequence[str],
                     grade: Grader, *, bootstrap_samples: int = 1000, confidence: float = 0.95,
                     seed: int = 0) -> dict[str, Any] | None:
    """Student and teacher retrieval of the logged queries over the logged passages, on the judge's grades of
    their pooled top-10s; None without queries, with fewer than 2 passages, or with no query the judge found a
    relevant passage for."""
    if not len(roles) == len(texts) == len(teacher) == len(student):
        raise ValueError(f"{len(roles)} roles, {len(texts)} texts, {len(teacher)} teacher and {len(student)} "
                         "student vectors")
    queries = [i for i, role in enumerate(roles) if role == "query"]
    passages = [i for i, role in enumerate(roles) if role == "passage"]
    if not queries or len(passages) < 2:
        return None
    t, s = (unit_rows(np.asarray(m, dtype=np.float64)) for m in (teacher, student))
    rankings = {name: [list(map(int, row)) for row in top_k(m[queries], m[passages], K)] for name, m in
                (("teacher", t), ("student", s))}
    pools = [list(dict.fromkeys(a + b)) for a, b in zip(rankings["teacher"], rankings["student"], strict=True)]
    pairs = [(q, p) for q, pool in zip(queries, pools, strict=True) for p in pool]
    grades = grade([(texts[q], texts[passages[p]]) for q, p in pairs])
    qrels: dict[int, dict[int, float]] = {q: {} for q in queries}
    for (q, p), g in zip(pairs, grades, strict=True):
        if g:
            qrels[q][p] = float(g)
    rows = [r for r, q in enumerate(queries) if qrels[q]]  # the queries the judge found something for
    labelled = [queries[r] for r in rows]
    if not labelled:
        return None
    labels = [qrels[q] for q in labelled]
    values = {name: per_query([rankings[name][r] for r in rows], labels, ks=KS, min_gain=RELEVANT)
              for name in rankings}  # nDCG takes every grade as gain; min_gain decides MRR and recall hits
    answered = np.array([any(g >= RELEVANT for g in label.values()) for label in labels])
    student_ndcg, teacher_ndcg = values["student"][f"ndcg_at_{K}"], values["teacher"][f"ndcg_at_{K}"]

    def ratio(idx: np.ndarray) -> np.ndarray:
        denominator = teacher_ndcg[idx].mean(axis=1)
        out: np.ndarray = np.where(denominator > 0, student_ndcg[idx].mean(axis=1) / np.where(
            denominator > 0, denominator, 1.0), np.nan)
        return out

    score = float(student_ndcg.mean() / teacher_ndcg.mean()) if teacher_ndcg.mean() > 0 else None
    ci = bootstrap_statistic(len(labelled), ratio, samples=bootstrap_samples, confidence=confidence, seed=seed)

    def summary(name: str) -> dict[str, float | None]:
        hits = values[name]
        return {f"ndcg_at_{K}": float(hits[f"ndcg_at_{K}"].mean()),
                "mrr_at_5": float(hits["mrr_at_5"][answered].mean()) if answered.any() else None,
                f"recall_at_{K}": float(hits[f"recall_at_{K}"][answered].mean()) if answered.any() else None}

    return {"reference": "LLM judge grades (0-3) of the pooled top-10s", "queries": len(queries),
            "queries_judged": len(labelled), "queries_without_a_relevant_passage": len(queries) - len(labelled),
            "passages": len(passages), "pairs_graded": len(pairs),
            "unreadable": sum(g is None for g in grades), "student": summary("student"),
            "teacher": summary("teacher"), "score": score, "score_ci": list(ci) if ci is not None else None}
