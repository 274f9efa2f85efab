"""The lexical half of an ensemble classifier student: TF-IDF word 1-2-grams and a logistic regression,
stored without pickle (vocabulary as JSON, arrays as .npz) and served with numpy and scikit-learn's
vectorizer rebuilt from its vocabulary and idf.

Why a student carries one (bench/selective, docs/benchmarks.md): averaged with the encoder head's
probabilities, it lifts macro-F1 and, more, ranks the student's confident answers better: finance
headlines are often templated, and exact words ("upgraded", "dividend") separate what a frozen
sentence space blurs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

LEXICAL_DIR = "lexical"


def vectorizer(vocabulary: dict[str, int] | None = None) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1, vocabulary=vocabulary, dtype=np.float32)


class LexicalHead:
    """TF-IDF + multinomial logistic regression over the student's label list (labels never seen: never predicted)."""

    def __init__(self, vocabulary: dict[str, int], idf: np.ndarray, weight: np.ndarray, bias: np.ndarray,
                 mix: float) -> None:
        self.vectorizer = vectorizer(vocabulary)
        self.vectorizer.idf_ = idf
        self.weight, self.bias, self.mix = weight, bias, mix  # weight: labels x vocabulary

    def probabilities(self, texts: list[str]) -> np.ndarray:
        logits = np.asarray(self.vectorizer.transform(texts) @ self.weight.T) + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        normalized: np.ndarray = probs / probs.sum(axis=1, keepdims=True)
        return normalized

    def save(self, directory: Path) -> None:
        target = directory / LEXICAL_DIR
        target.mkdir(parents=True, exist_ok=True)
        vocabulary = {str(k): int(v) for k, v in self.vectorizer.vocabulary_.items()}
        (target / "vocabulary.json").write_text(json.dumps(vocabulary, ensure_ascii=False), encoding="utf-8")
        np.savez_compressed(target / "head.npz", idf=self.vectorizer.idf_, weight=self.weight, bias=self.bias,
                            mix=np.array([self.mix]))

    @classmethod
    def load(cls, directory: Path) -> LexicalHead | None:
        target = directory / LEXICAL_DIR
        if not (target / "head.npz").exists():
            return None
        vocabulary = json.loads((target / "vocabulary.json").read_text("utf-8"))
        with np.load(target / "head.npz", allow_pickle=False) as arrays:
            return cls(vocabulary, arrays["idf"], arrays["weight"], arrays["bias"], float(arrays["mix"][0]))
