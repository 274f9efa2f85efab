"""Embedding agreement metrics: neighbourhoods of the student against the teacher's, full and Matryoshka."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import spearmanr
from sklearn.metrics import ndcg_score
from sklearn.neighbors import NearestNeighbors

from services.domain.errors import InsufficientData
from services.evaluator.metrics import embedding
from services.evaluator.metrics.embedding import embedding_report


def _neighbours(matrix: np.ndarray, k: int) -> np.ndarray:
    """Brute-force cosine top-k per row with self removed (sklearn as the reference)."""
    nn = NearestNeighbors(n_neighbors=k + 1, metric="cosine", algorithm="brute").fit(matrix)
    idx = nn.kneighbors(matrix, return_distance=False)
    return np.array([[j for j in row if j != i][:k] for i, row in enumerate(idx)])


def _cos(matrix: np.ndarray) -> np.ndarray:
    unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    return unit @ unit.T


@pytest.fixture
def pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    teacher = rng.normal(size=(120, 32))
    # A student of another dimension that sees the teacher through a noisy projection.
    student = teacher @ rng.normal(size=(32, 24)) + 0.8 * rng.normal(size=(120, 24))
    return teacher, student


def test_matches_brute_force_reference(pair: tuple[np.ndarray, np.ndarray]) -> None:
    teacher, student = pair
    report = embedding_report(teacher, student, bootstrap_samples=0)
    for k in (1, 5, 10):
        t_nn, s_nn = _neighbours(teacher, k), _neighbours(student, k)
        expected = np.mean([len(set(a) & set(b)) / k for a, b in zip(t_nn, s_nn, strict=True)])
        assert report[f"recall@{k}"] == pytest.approx(expected)

    t_sim, s_sim = _cos(teacher), _cos(student)
    n = teacher.shape[0]
    rr, ndcg_true, ndcg_pred = [], [], []
    t_top10 = _neighbours(teacher, 10)
    for i in range(n):
        others = np.delete(np.arange(n), i)
        order = others[np.argsort(-s_sim[i, others], kind="stable")]
        rr.append(1 / (1 + int(np.where(order == t_top10[i, 0])[0][0])))
        relevance = np.isin(others, t_top10[i]).astype(float)
        ndcg_true.append(relevance)
        ndcg_pred.append(s_sim[i, others])
    assert report["mrr"] == pytest.approx(np.mean(rr))
    assert report["ndcg@10"] == pytest.approx(ndcg_score(np.array(ndcg_true), np.array(ndcg_pred), k=10))
    upper = np.triu_indices(n, k=1)
    assert report["spearman"] == pytest.approx(spearmanr(t_sim[upper], s_sim[upper]).statistic)
    assert report["score"] == report["recall@10"]
    assert report["pairs"] == n * (n - 1) // 2


def test_identical_geometry_scores_one_whatever_the_scale_or_rotation() -> None:
    rng = np.random.default_rng(1)
    teacher = rng.normal(size=(60, 16))
    rotation, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    student = 3.0 * teacher @ rotation  # cosine geometry unchanged
    report = embedding_report(teacher, student, bootstrap_samples=100)
    for key in ("recall@1", "recall@5", "recall@10", "mrr", "ndcg@10", "spearman", "score"):
        assert report[key] == pytest.approx(1.0), key
    assert report["score_ci"] == pytest.approx([1.0, 1.0])


def test_random_student_scores_near_chance(pair: tuple[np.ndarray, np.ndarray]) -> None:
    teacher, _ = pair
    noise = np.random.default_rng(5).normal(size=(120, 24))
    report = embedding_report(teacher, noise, bootstrap_samples=0)
    assert report["recall@10"] < 0.2  # chance is 10/119
    assert abs(report["spearman"]) < 0.1


def test_matryoshka_truncation_re_normalises_and_skips_impossible_dims() -> None:
    rng = np.random.default_rng(2)
    teacher = rng.normal(size=(80, 8))
    # The first 8 dims carry the teacher exactly; the tail is loud noise that ruins the full vector.
    student = np.hstack([teacher, 10 * rng.normal(size=(80, 56))])
    report = embedding_report(teacher, student, matryoshka_dims=[8, 32, 64, 128], bootstrap_samples=0)
    assert set(report["matryoshka"]) == {"8", "32"}  # 64 is the full size, 128 does not exist
    assert report["matryoshka"]["8"]["recall@10"] == pytest.approx(1.0)
    assert report["matryoshka"]["32"]["recall@10"] < 1.0
    assert report["recall@10"] < report["matryoshka"]["8"]["recall@10"]


def test_large_n_subsamples_pairs_deterministically(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedding, "MAX_PAIRS", 500)
    rng = np.random.default_rng(3)
    teacher = rng.normal(size=(100, 8))
    student = teacher + 0.1 * rng.normal(size=(100, 8))
    first = embedding_report(teacher, student, bootstrap_samples=0, seed=4)
    second = embedding_report(teacher, student, bootstrap_samples=0, seed=4)
    assert first["pairs"] == 500
    assert first["spearman"] == second["spearman"] > 0.9


def test_small_n_uses_every_available_neighbour() -> None:
    rng = np.random.default_rng(4)
    teacher = rng.normal(size=(5, 4))
    report = embedding_report(teacher, rng.normal(size=(5, 3)), bootstrap_samples=0)
    assert report["neighbours"] == 4
    assert report["recall@10"] == pytest.approx(1.0)  # all 4 others are in both top-"10" sets


@settings(max_examples=25, deadline=None)
@given(st.integers(3, 40), st.integers(2, 12), st.integers(0, 1000))
def test_property_metrics_are_bounded(n: int, dim: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    report = embedding_report(rng.normal(size=(n, dim)), rng.normal(size=(n, dim + 1)), bootstrap_samples=20)
    for key in ("recall@1", "recall@5", "recall@10", "mrr", "ndcg@10"):
        assert 0.0 <= report[key] <= 1.0
    lo, hi = report["score_ci"]
    assert 0.0 <= lo <= hi <= 1.0


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="same number of rows"):
        embedding_report(np.zeros((3, 2)), np.zeros((4, 2)))
    with pytest.raises(InsufficientData):
        embedding_report(np.ones((1, 2)), np.ones((1, 2)))
