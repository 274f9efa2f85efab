"""`flywheel search`: two-stage search (short-vector prefilter, full-vector rerank) of a text corpus."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from orchestrator.cli.output import CliState, emit, handles_errors, json_option


def read_corpus(path: Path) -> list[str]:
    """One text per line (.txt), or one JSON object with a `text` field per line (.jsonl)."""
    lines = [line for line in path.read_text("utf-8").splitlines() if line.strip()]
    if path.suffix == ".jsonl":
        return [str(json.loads(line)["text"]) for line in lines]
    return lines


@click.command("search")
@click.argument("queries", nargs=-1, required=True)
@click.option("--corpus", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="Texts to search: one per line (.txt) or JSON lines with a `text` field (.jsonl).")
@click.option("--model", required=True, help="Registry model name, or a student artifact directory.")
@click.option("-k", "k", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--prefilter-dims", type=click.IntRange(min=8), default=128, show_default=True,
              help="Matryoshka prefix used to prefilter; the model's full size means exact search.")
@click.option("--candidates", type=click.IntRange(min=1), default=100, show_default=True,
              help="Corpus rows the prefilter keeps per query for the full-vector rerank.")
@click.option("--index", "index_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A .npy file holding the corpus vectors: read when it matches the corpus, else written.")
@json_option
@handles_errors
@click.pass_obj
def search_command(state: CliState, queries: tuple[str, ...], corpus: Path, model: str, k: int, prefilter_dims: int,
                   candidates: int, index_path: Path | None, as_json: bool) -> None:
    """Search CORPUS for each query: the first --prefilter-dims values of every vector find --candidates rows,
    the full vectors rank them."""
    import numpy as np

    from services.models.cache import ModelCache
    from services.models.students.embedding_distill.runtime import Embedder
    from services.models.students.embedding_distill.search import TwoStageIndex

    texts = read_corpus(corpus)
    if not texts:
        raise click.UsageError(f"{corpus} holds no texts")
    path = Path(model) if Path(model).is_dir() else ModelCache(state.settings.models).path(model)
    embedder = Embedder(path)
    vectors = np.load(index_path) if index_path is not None and index_path.exists() else None
    if vectors is None or vectors.shape != (len(texts), embedder.dim):
        vectors = embedder.encode(texts)
        if index_path is not None:
            np.save(index_path, vectors)
    index = TwoStageIndex(vectors, prefilter_dims=prefilter_dims, candidates=candidates)
    found, scores = index.search(embedder.encode(list(queries)), k)
    results: list[dict[str, Any]] = [{"query": q, "hits": [{"rank": r + 1, "index": int(i), "score": round(float(s), 4), "text": texts[int(i)]}
                                     for r, (i, s) in enumerate(zip(row, row_scores, strict=True))]}
               for q, row, row_scores in zip(queries, found, scores, strict=True)]

    def human() -> None:
        for result in results:
            click.echo(f"# {result['query']}")
            for hit in result["hits"]:
                click.echo(f"{hit['rank']:>3}  {hit['score']:.3f}  {hit['text'][:100]}")

    emit({"model": str(path), "corpus": len(texts), "prefilter_dims": index.prefilter_dims,
          "candidates": candidates, "results": results}, as_json=as_json, human=human)
