"""Cheap lexical agreement with the teacher for chat, used when no judge is configured.

Token F1 uses SQuAD's normalisation (lower case, no punctuation, no articles, single spaces);
ROUGE-L F is the LCS-based F-measure over the same tokens. Neither understands paraphrase, so
they undervalue a good student; they are a floor, not a verdict.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from services.evaluator.metrics.bootstrap import bootstrap_mean, require_aligned

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalise_tokens(text: str) -> list[str]:
    """SQuAD-style tokens: lower case, punctuation and articles removed, split on whitespace."""
    return _ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split()


def token_f1(reference: str, predicted: str) -> float:
    """SQuAD token F1 of a prediction against a reference (1.0 when both normalise to nothing)."""
    ref, pred = normalise_tokens(reference), normalise_tokens(predicted)
    if not ref or not pred:
        return float(ref == pred)
    common = sum((Counter(ref) & Counter(pred)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence, bit-parallel (Allison-Dix) so long answers stay cheap."""
    if not a or not b:
        return 0
    masks: dict[str, int] = {}
    for i, token in enumerate(a):
        masks[token] = masks.get(token, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for token in b:
        u = v & masks.get(token, 0)
        v = ((v + u) | (v - u)) & full
    # Each zero bit of v marks one position of a that joined the common subsequence.
    return len(a) - v.bit_count()


def rouge_l_f(reference: str, predicted: str) -> float:
    """ROUGE-L F1 (beta = 1) over normalised tokens."""
    ref, pred = normalise_tokens(reference), normalise_tokens(predicted)
    if not ref or not pred:
        return float(ref == pred)
    lcs = lcs_length(ref, pred)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def text_report(
    reference: Sequence[str],
    predicted: Sequence[str | None],
    *,
    bootstrap_samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Mean token F1 (the score, with a bootstrap CI), ROUGE-L F and exact match; None predictions score 0."""
    require_aligned(reference, predicted)
    pairs = list(zip(reference, predicted, strict=True))
    f1 = np.array([0.0 if p is None else token_f1(r, p) for r, p in pairs])
    rouge = np.array([0.0 if p is None else rouge_l_f(r, p) for r, p in pairs])
    exact = np.array([p is not None and normalise_tokens(r) == normalise_tokens(p) for r, p in pairs], dtype=np.float64)
    ci = bootstrap_mean(f1, samples=bootstrap_samples, confidence=confidence, seed=seed)
    return {
        "n": len(reference),
        "unparseable": sum(p is None for p in predicted),
        "token_f1": float(f1.mean()),
        "token_f1_ci": list(ci) if ci is not None else None,
        "rouge_l_f": float(rouge.mean()),
        "exact_match": float(exact.mean()),
    }
