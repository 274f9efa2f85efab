"""Retrieval metrics against labelled relevance, on cases computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.domain.errors import InsufficientData
from services.evaluator.metrics.retrieval import (
    ndcg,
    paired_bootstrap,
    per_query,
    recall,
    reciprocal_rank,
    reference_qrels,
    retrieval_report,
    top_k,
)


def test_reciprocal_rank_is_one_over_the_first_relevant_rank_within_k() -> None:
    ranking = ["a", "b", "c", "d"]
    assert reciprocal_rank(ranking, {"c": 1.0, "d": 1.0}, 5) == pytest.approx(1 / 3)
    assert reciprocal_rank(ranking, {"d": 1.0}, 3) == 0.0  # relevant, but below the cut-off
    assert reciprocal_rank(ranking, {"a": 1.0, "b": 2.0}, 5, min_gain=2.0) == 0.5  # only gain >= 2 counts


def test_recall_counts_relevant_documents_in_the_top_k() -> None:
    assert recall(["a", "b", "c"], {"a": 1.0, "c": 1.0, "z": 1.0}, 2) == pytest.approx(1 / 3)
    assert recall(["a", "b", "c"], {"a": 1.0, "c": 1.0, "z": 1.0}, 3) == pytest.approx(2 / 3)
    assert math.isnan(recall(["a"], {}, 10))


def test_ndcg_with_graded_gains_by_hand() -> None:
    # ranking b (gain 1), a (gain 2), x (0): DCG = 1/log2(2) + 2/log2(3); ideal = 2/log2(2) + 1/log2(3)
    value = ndcg(["b", "a", "x"], {"a": 2.0, "b": 1.0}, 10)
    assert value == pytest.approx((1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3)))
    assert ndcg(["a", "b"], {"a": 2.0, "b": 1.0}, 10) == pytest.approx(1.0)
    # the ideal is cut at k as well: one slot, best possible gain 2, got 1
    assert ndcg(["b", "a"], {"a": 2.0, "b": 1.0}, 1) == pytest.approx(0.5)


def test_report_means_skip_unlabelled_queries_and_carry_cis() -> None:
    rankings = [["a", "b"], ["c", "d"], ["e"]]
    qrels = [{"a": 1.0}, {"d": 1.0}, {}]
    report = retrieval_report(rankings, qrels, bootstrap_samples=200)
    assert report["n"] == 2 and report["skipped_queries"] == 1
    assert report["mrr_at_5"] == pytest.approx((1 + 0.5) / 2)
    assert report["ndcg_at_10"] == pytest.approx((1 + 1 / math.log2(3)) / 2)
    assert report["recall_at_10"] == 1.0
    lo, hi = report["mrr_at_5_ci"]
    assert 0.5 <= lo <= report["mrr_at_5"] <= hi <= 1.0
    with pytest.raises(InsufficientData):
        retrieval_report([["a"]], [{}])


def test_paired_bootstrap_of_a_difference() -> None:
    better, worse = np.array([1.0, 1.0, 0.5, 1.0] * 10), np.array([0.5, 0.5, 0.5, 0.0] * 10)
    result = paired_bootstrap(better, worse, samples=500, seed=1)
    assert result["mean_diff"] == pytest.approx(0.5)
    assert result["ci"][0] > 0 and result["p_not_above_zero"] == 0.0
    same = paired_bootstrap(better, better, samples=100)
    assert same["mean_diff"] == 0.0 and same["ci"] == [0.0, 0.0] and same["p_not_above_zero"] == 1.0


def test_top_k_and_reference_labels_make_the_reference_perfect() -> None:
    corpus = np.array([[1.0, 0.0], [0.0, 1.0], [0.7071, 0.7071]])
    queries = np.array([[1.0, 0.1], [0.0, 1.0]])
    top = top_k(queries, corpus, 2)
    assert top.tolist() == [[0, 2], [1, 2]]
    labels = reference_qrels(top)
    values = per_query([list(r) for r in top], labels, ks={"mrr": 5, "ndcg": 10, "recall": 10})
    assert values["ndcg_at_10"].tolist() == [1.0, 1.0]
    reversed_rankings = [[2, 0], [2, 1]]
    assert per_query(reversed_rankings, labels)["mrr_at_5"].tolist() == [1.0, 1.0]
