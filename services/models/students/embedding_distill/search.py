"""Two-stage vector search: a short Matryoshka prefix prefilters the corpus, the full vectors rerank.

An embedding student trained with Matryoshka sizes keeps its first d values useful on their own, so
the first `prefilter_dims` of every corpus vector (re-normalised) find `candidates` likely neighbours
at a fraction of the full dot products' cost, and only those are scored at full size. With
`prefilter_dims` None (or the full size) it is exact search. Vectors are unit rows: scores are cosines.
"""

from __future__ import annotations

import numpy as np

from services.models.students.embedding_distill.runtime import truncate


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k largest scores per row, best first."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    top: np.ndarray = np.take_along_axis(part, order, axis=1)
    return top


class TwoStageIndex:
    """Corpus vectors held at full size and as a re-normalised prefix; `search` runs prefilter + rerank."""

    def __init__(self, vectors: np.ndarray, *, prefilter_dims: int | None = 128, candidates: int = 100) -> None:
        if vectors.ndim != 2 or not len(vectors):
            raise ValueError(f"need a non-empty (n, d) matrix of corpus vectors, got shape {vectors.shape}")
        self.full = truncate(vectors, None)
        dim = self.full.shape[1]
        self.prefilter_dims = prefilter_dims if prefilter_dims is not None and prefilter_dims < dim else None
        self.short = truncate(vectors, self.prefilter_dims) if self.prefilter_dims else None
        if candidates < 1:
            raise ValueError("candidates must be at least 1")
        self.candidates = candidates

    def __len__(self) -> int:
        return int(self.full.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self.full.nbytes + (self.short.nbytes if self.short is not None else 0))

    def exact(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """(indices, scores) of the k nearest corpus rows by full-size cosine, best first."""
        q = truncate(np.atleast_2d(queries), None)
        scores = q @ self.full.T
        top = _top(scores, k)
        return top, np.take_along_axis(scores, top, axis=1)

    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """(indices, scores): the prefix finds `candidates` rows per query, full-size cosine ranks them."""
        if self.short is None or self.prefilter_dims is None:
            return self.exact(queries, k)
        q = truncate(np.atleast_2d(queries), None)
        short_q = truncate(q, self.prefilter_dims)
        pool = _top(short_q @ self.short.T, max(self.candidates, k))
        scores = np.einsum("qd,qcd->qc", q, self.full[pool])
        order = _top(scores, k)
        return np.take_along_axis(pool, order, axis=1), np.take_along_axis(scores, order, axis=1)
