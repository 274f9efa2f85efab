"""Embedding students: a whole encoder distilled from the teacher's vectors, serving /v1/embeddings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.domain.students import KindSpec, StudentKind
from services.models.cache import ModelCache
from services.models.students.answering import embedding_outputs
from services.models.students.kind import StudentKindPackage, no_chat


def load_runtime(cache: ModelCache, base_model: str, artifact_dir: Path | None) -> Any:
    """The distilled encoder (or the untrained base model, the customized run's baseline)."""
    from services.models.students.embedding_distill.runtime import Embedder

    return Embedder(artifact_dir if artifact_dir is not None else cache.path(base_model))


KIND = StudentKindPackage(
    spec=KindSpec(
        kind=StudentKind.EMBEDDING_DISTILL, serves="embeddings", learns=frozenset({"embedding"}),
        weights="model", finetunes=frozenset({"lora", "full"}), prompt="none",
        confidence="none",
        no_baseline="an embedding student takes no prompt, so base/ICL prompting does not apply; "
                    "its untrained model is measured as the customized run's baseline instead"),
    trainer="services.models.students.embedding_distill.trainer:EmbeddingDistillTrainer",
    load_runtime=load_runtime, answer=embedding_outputs, chat=no_chat)
