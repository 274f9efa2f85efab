"""Two-stage search: a Matryoshka prefix prefilters, full vectors rerank; and the `flywheel search` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from orchestrator.cli.main import cli
from services.models.students.embedding_distill.search import TwoStageIndex
from tests.unit.customizer.test_embedding_distill import random_texts, tiny_encoder


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_exact_search_is_brute_force_and_a_full_pool_equals_it() -> None:
    rng = np.random.default_rng(0)
    corpus, queries = _unit(rng.normal(size=(500, 64))), _unit(rng.normal(size=(20, 64)))
    index = TwoStageIndex(corpus, prefilter_dims=16, candidates=500)
    expected = np.argsort(-(queries @ corpus.T), axis=1, kind="stable")[:, :10]
    assert (index.exact(queries, 10)[0] == expected).all()
    assert (index.search(queries, 10)[0] == expected).all(), "a pool of every row reranks to exact search"
    assert TwoStageIndex(corpus, prefilter_dims=64).prefilter_dims is None, "the full size is exact search"


def test_prefilter_keeps_the_neighbours_when_the_prefix_carries_most_of_the_signal() -> None:
    rng = np.random.default_rng(1)
    # Matryoshka-like vectors: the first 16 of 64 values carry most of the variance
    scale = np.r_[np.ones(16) * 3.0, np.ones(48) * 0.5]
    corpus = _unit(rng.normal(size=(2000, 64)) * scale)
    queries = _unit(corpus[:50] + 0.05 * rng.normal(size=(50, 64)))
    index = TwoStageIndex(corpus, prefilter_dims=16, candidates=100)
    exact, two_stage = index.exact(queries, 10)[0], index.search(queries, 10)[0]
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, two_stage, strict=True)])
    assert overlap >= 0.9
    scores = index.search(queries, 10)[1]
    assert (np.diff(scores, axis=1) <= 1e-6).all(), "best first"


def test_flywheel_search_finds_a_text_and_keeps_its_index(tmp_path: Path) -> None:
    model = tiny_encoder(tmp_path / "tiny")
    texts = random_texts(60, seed=3)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(texts))
    index = tmp_path / "index.npy"
    args = ["search", texts[7], "--corpus", str(corpus), "--model", str(model), "-k", "3",
            "--prefilter-dims", "8", "--candidates", "20", "--index", str(index), "--json"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    hits = payload["results"][0]["hits"]
    assert hits[0]["text"] == texts[7] and hits[0]["score"] > 0.99 and len(hits) == 3
    assert payload["prefilter_dims"] == 8 and np.load(index).shape == (60, 32)
    again = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert json.loads(again.stdout)["results"] == payload["results"], "the saved index gives the same hits"
