"""Classification metrics against scikit-learn, and the f1_vs_teacher rules from issue #5."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from services.domain.errors import InsufficientData
from services.evaluator.metrics.classification import _bootstrap_f1_vs_teacher, classification_report

SENTINEL = "\0unparseable"  # stands in for None when handing predictions to sklearn


def _sk(predicted: list[str | None]) -> list[str]:
    return [SENTINEL if p is None else p for p in predicted]


def _sk_f1_vs_teacher(reference: list[str], predicted: list[str | None]) -> float:
    return f1_score(reference, _sk(predicted), labels=sorted(set(reference)), average="macro", zero_division=0)


@pytest.mark.parametrize(
    ("reference", "predicted", "expected"),
    [
        pytest.param(["a", "b", "a", "b"], ["a", "b", "a", "b"], 1.0, id="perfect"),
        pytest.param(["a", "a", "b", "b"], ["b", "b", "a", "a"], 0.0, id="all-swapped"),
        # a: tp1 fn1 -> F1 2/3; b: tp2 fp1 -> F1 0.8; mean 0.7333
        pytest.param(["a", "a", "b", "b"], ["a", "b", "b", "b"], (2 / 3 + 0.8) / 2, id="one-miss"),
        # An unparseable answer is wrong (a: tp1 fn1 -> 2/3) and adds no class to the average.
        pytest.param(["a", "a", "b"], ["a", None, "b"], (2 / 3 + 1.0) / 2, id="unparseable-adds-no-class"),
        # A hallucinated label is wrong and adds no zero-F1 class: same value as the unparseable case.
        pytest.param(["a", "a", "b"], ["a", "zzz", "b"], (2 / 3 + 1.0) / 2, id="out-of-set-adds-no-class"),
        pytest.param(["a", "a", "a"], [None, None, None], 0.0, id="nothing-parsed"),
    ],
)
def test_f1_vs_teacher_table(reference: list[str], predicted: list[str | None], expected: float) -> None:
    report = classification_report(reference, predicted, bootstrap_samples=0)
    assert report["f1_vs_teacher"] == pytest.approx(expected)
    assert report["f1_vs_teacher"] == pytest.approx(_sk_f1_vs_teacher(reference, predicted))
    assert report["f1_vs_teacher_ci"] is None  # bootstrap_samples=0 disables CIs


def test_out_of_set_label_lowers_macro_f1_but_not_f1_vs_teacher_class_count() -> None:
    report = classification_report(["a", "a", "b"], ["a", "zzz", "b"], bootstrap_samples=0)
    # Ordinary macro F1 averages over a, b and zzz (F1 0): (2/3 + 1 + 0) / 3.
    assert report["macro_f1"] == pytest.approx((2 / 3 + 1.0) / 3)
    assert report["out_of_set"] == 1 and report["unparseable"] == 0
    assert report["labels"] == ["a", "b"]
    assert report["confusion"]["labels"] == ["a", "b", "zzz"]
    assert report["confusion"]["matrix"] == [[1, 0, 1], [0, 1, 0], [0, 0, 0]]


def test_full_report_matches_sklearn_on_a_realistic_mix() -> None:
    rng = np.random.default_rng(7)
    labels = ["analyst", "earnings", "fed", "macro", "markets"]
    reference = [labels[i] for i in rng.integers(0, 5, 300)]
    predicted: list[str | None] = []
    for ref, r in zip(reference, rng.random(300), strict=True):
        predicted.append(None if r < 0.05 else "weather" if r < 0.08 else ref if r < 0.7 else labels[int(r * 1000) % 5])
    report = classification_report(reference, predicted, bootstrap_samples=0)
    sk_pred = _sk(predicted)
    teacher = sorted(set(reference))
    union = sorted(set(reference) | {p for p in predicted if p is not None})

    assert report["accuracy"] == pytest.approx(accuracy_score(reference, sk_pred))
    assert report["f1_vs_teacher"] == pytest.approx(_sk_f1_vs_teacher(reference, predicted))
    assert report["macro_f1"] == pytest.approx(f1_score(reference, sk_pred, labels=union, average="macro", zero_division=0))
    assert report["weighted_f1"] == pytest.approx(
        f1_score(reference, sk_pred, labels=teacher, average="weighted", zero_division=0)
    )
    precision, recall, f1, support = precision_recall_fscore_support(
        reference, sk_pred, labels=teacher, zero_division=0
    )
    for i, label in enumerate(teacher):
        row = report["per_class"][label]
        assert row["precision"] == pytest.approx(precision[i])
        assert row["recall"] == pytest.approx(recall[i])
        assert row["f1"] == pytest.approx(f1[i])
        assert row["support"] == support[i]
    assert report["confusion"]["labels"] == union
    assert report["confusion"]["matrix"] == confusion_matrix(reference, sk_pred, labels=union).tolist()
    assert report["unparseable"] == sum(p is None for p in predicted)
    assert sum(report["confusion"]["unparseable"]) == report["unparseable"]


labels_st = st.sampled_from(["a", "b", "c", "d"])
pairs_st = st.lists(st.tuples(labels_st, st.one_of(st.none(), labels_st, st.just("x"))), min_size=1, max_size=60)


@settings(max_examples=150, deadline=None)
@given(pairs_st)
def test_property_f1_vs_teacher_equals_sklearn(pairs: list[tuple[str, str | None]]) -> None:
    reference = [r for r, _ in pairs]
    predicted = [p for _, p in pairs]
    report = classification_report(reference, predicted, bootstrap_samples=0)
    assert report["f1_vs_teacher"] == pytest.approx(_sk_f1_vs_teacher(reference, predicted))
    assert 0.0 <= report["f1_vs_teacher"] <= 1.0
    assert report["accuracy"] == pytest.approx(accuracy_score(reference, _sk(predicted)))


@settings(max_examples=30, deadline=None)
@given(pairs_st, st.integers(0, 2**31 - 1))
def test_property_bootstrap_replicates_are_the_metric_on_resamples(pairs: list[tuple[str, str | None]], seed: int) -> None:
    """The vectorised bootstrap computes, per resample, exactly what the scalar metric would."""
    reference = [r for r, _ in pairs]
    predicted = [p for _, p in pairs]
    report = classification_report(reference, predicted, bootstrap_samples=50, seed=seed)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(pairs), size=(50, len(pairs)))  # the same draws resample_indices makes
    replicates = np.array(
        [_sk_f1_vs_teacher([reference[i] for i in row], [predicted[i] for i in row]) for row in idx]
    )
    lo, hi = np.quantile(replicates, [0.025, 0.975])
    assert report["f1_vs_teacher_ci"] == pytest.approx([lo, hi])


def test_ci_brackets_the_point_estimate_is_reproducible_and_narrows_with_n() -> None:
    rng = np.random.default_rng(0)
    labels = [str(i) for i in range(6)]

    def sample(n: int) -> tuple[list[str], list[str | None]]:
        ref = [labels[i] for i in rng.integers(0, 6, n)]
        return ref, [r if rng.random() < 0.8 else labels[rng.integers(0, 6)] for r in ref]

    small_ref, small_pred = sample(100)
    large_ref, large_pred = sample(3000)
    small = classification_report(small_ref, small_pred, seed=3)
    again = classification_report(small_ref, small_pred, seed=3)
    large = classification_report(large_ref, large_pred, seed=3)
    lo, hi = small["f1_vs_teacher_ci"]
    assert lo <= small["f1_vs_teacher"] <= hi
    assert again["f1_vs_teacher_ci"] == small["f1_vs_teacher_ci"]
    assert (large["f1_vs_teacher_ci"][1] - large["f1_vs_teacher_ci"][0]) < (hi - lo) / 2


def test_bootstrap_of_1000_resamples_of_200_items_is_fast() -> None:
    rng = np.random.default_rng(1)
    ref = rng.integers(0, 20, 200)
    pred = np.where(rng.random(200) < 0.7, ref, 20)
    start = time.perf_counter()
    ci = _bootstrap_f1_vs_teacher(ref, pred, 20, samples=1000, confidence=0.95, seed=0)
    elapsed = time.perf_counter() - start
    assert ci is not None and 0 < ci[0] < ci[1] < 1
    assert elapsed < 0.5, f"bootstrap took {elapsed:.3f}s"


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="2 references but 1 predictions"):
        classification_report(["a", "b"], ["a"])
    with pytest.raises(InsufficientData):
        classification_report([], [])
