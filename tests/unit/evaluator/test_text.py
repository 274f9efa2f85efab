"""Lexical chat metrics: SQuAD token F1 and ROUGE-L."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.evaluator.metrics.text import lcs_length, normalise_tokens, rouge_l_f, text_report, token_f1


@pytest.mark.parametrize(
    ("reference", "predicted", "expected"),
    [
        ("The Fed raised rates.", "the fed raised rates", 1.0),  # case, punctuation, articles
        ("Fed raised rates", "Fed cut rates", 2 / 3),
        ("Fed raised rates", "Bonds rallied", 0.0),
        ("", "", 1.0),
        ("a the an", "", 1.0),  # both normalise to nothing
        ("Fed", "", 0.0),
        ("rates rates up", "rates up up", 2 / 3),  # multiset overlap: rates x1, up x1
    ],
)
def test_token_f1_table(reference: str, predicted: str, expected: float) -> None:
    assert token_f1(reference, predicted) == pytest.approx(expected)


def test_normalise_tokens() -> None:
    assert normalise_tokens("The  Q3 EPS, an 'upside' surprise!") == ["q3", "eps", "upside", "surprise"]


def _lcs_dp(a: list[str], b: list[str]) -> int:
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1][j + 1] = table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
    return table[-1][-1]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from("abcd"), max_size=40), st.lists(st.sampled_from("abcd"), max_size=40))
def test_property_bit_parallel_lcs_equals_dynamic_programming(a: list[str], b: list[str]) -> None:
    assert lcs_length(a, b) == _lcs_dp(a, b) == lcs_length(b, a)


def test_rouge_l() -> None:
    # LCS of "police killed gunman" / "police kill gunman" is 2 tokens: P = R = 2/3.
    assert rouge_l_f("police killed the gunman", "the police kill the gunman") == pytest.approx(2 / 3)
    assert rouge_l_f("same words here", "same words here") == 1.0
    assert rouge_l_f("abc", "xyz") == 0.0


def test_rouge_l_handles_long_answers_quickly() -> None:
    long_a = " ".join(f"w{i % 300}" for i in range(3000))
    long_b = " ".join(f"w{(i * 7) % 300}" for i in range(3000))
    assert 0.0 < rouge_l_f(long_a, long_b) < 1.0


def test_text_report() -> None:
    report = text_report(["Fed raised rates", "Stocks fell", "Oil up"], ["fed raised rates", None, "Gold up"], bootstrap_samples=100)
    assert report["token_f1"] == pytest.approx((1.0 + 0.0 + 0.5) / 3)
    assert report["exact_match"] == pytest.approx(1 / 3)
    assert report["unparseable"] == 1
    lo, hi = report["token_f1_ci"]
    assert lo <= report["token_f1"] <= hi
