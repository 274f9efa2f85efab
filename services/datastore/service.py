"""The datastore's entry point for one workload: open the store, pick the token counter and the
ICL embedder from the model cache, build the dataset. Shared by the CLI and the datastore worker."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from services.datastore.datasets import build_dataset
from services.datastore.ingest import RawLine, ingest_lines
from services.datastore.stores import open_log_store
from services.domain.datasets import DatasetRef, datasets_root
from services.domain.settings import Settings, apply_overrides
from services.domain.students import base_family
from services.models.locks import MODEL_LOAD_LOCK

log = logging.getLogger(__name__)
DATA_SECTIONS = ("data_split", "datasets", "icl", "workloads")


def build_for_workload(
    settings: Settings, *, workload_id: str, client_id: str | None, overrides: dict[str, Any] | None = None
) -> DatasetRef:
    """Build (or rebuild: the id is reproducible) the dataset of a workload's newest logs."""
    if overrides:
        settings = apply_overrides(settings, overrides, allowed=DATA_SECTIONS)
    store = open_log_store(settings.log_store, settings.ingest)
    counter, counter_name = student_token_counter(settings)
    try:
        return build_dataset(store, settings, workload_id=workload_id, client_id=client_id,
                             root=datasets_root(settings.artifacts.root), count_tokens=counter, token_counter_name=counter_name,
                             embed=icl_embedder(settings))
    finally:
        store.close()


def student_token_counter(settings: Settings) -> tuple[Callable[[str], int] | None, str]:
    """Count ICL tokens with the first causal-LM student's tokenizer, if it is in the cache."""
    from services.models.cache import ModelCache

    cache = ModelCache(settings.models)
    for candidate in settings.candidates:
        if candidate.enabled and base_family(candidate.kind) == "causal_lm" and cache.cached(candidate.model):
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(cache.path(candidate.model)))
            def count(text: str, tokenizer: Any = tokenizer) -> int:
                return len(tokenizer.encode(text, add_special_tokens=False))

            return count, f"tokenizer:{candidate.model}"
    log.warning("no causal-LM student is fetched; ICL budget counted as characters/4 (run `flywheel models fetch`)")
    return None, "approx_chars_div_4"


def icl_embedder(settings: Settings) -> Callable[[list[str]], object] | None:
    """Sentence embeddings for semantic ICL selection, from the model cache."""
    if settings.icl.example_selection != "semantic_similarity":
        return None
    from sentence_transformers import SentenceTransformer

    from services.models.cache import ModelCache

    with MODEL_LOAD_LOCK:
        model = SentenceTransformer(str(ModelCache(settings.models).path(settings.icl.embedding_model)), device="cpu")
    return lambda texts: model.encode(texts, batch_size=64, show_progress_bar=len(texts) > 500)


def count_logs(settings: Settings, workload_id: str, client_id: str | None) -> int:
    """Logged records of a workload (of one client when `client_id` is given), from the store's counts."""
    store = open_log_store(settings.log_store, settings.ingest)
    try:
        return sum(c.records for c in store.counts()
                   if c.workload_id == workload_id and (client_id is None or c.client_id == client_id))
    finally:
        store.close()


def ingest_batch(settings: Settings, lines: Iterable[RawLine], *, source: str, file_sha256: str) -> dict[str, Any]:
    """Validate, store and quarantine a batch of lines (POST /api/logs, the gateway's logged calls), like
    `flywheel ingest`; return the summary without the per-file part."""
    store = open_log_store(settings.log_store, settings.ingest)
    try:
        summary = ingest_lines(lines, store=store, source=source, file_sha256=file_sha256,
                               max_record_bytes=settings.ingest.max_record_bytes, batch_size=settings.ingest.batch_size)
    finally:
        store.close()
    out = summary.to_json()
    out.pop("files", None)
    return out
