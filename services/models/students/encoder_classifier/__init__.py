"""Encoder-classifier students: a whole encoder with a label head, reading the last user turn."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.domain.students import KindSpec, StudentKind
from services.models.cache import ModelCache
from services.models.students.encoder_classifier.answer import answer
from services.models.students.encoder_classifier.serving import chat
from services.models.students.kind import StudentKindPackage


def load_runtime(cache: ModelCache, base_model: str, artifact_dir: Path | None) -> Any:
    """The trained classifier (there is no untrained one: the head comes from training)."""
    from services.models.students.encoder_classifier.runtime import ClassifierRunner

    if artifact_dir is None:
        raise ValueError("an encoder classifier has no head before it is trained: it needs its artifact")
    return ClassifierRunner(artifact_dir / "model")


KIND = StudentKindPackage(
    spec=KindSpec(
        kind=StudentKind.ENCODER_CLASSIFIER, serves="chat", learns=frozenset({"classification"}),
        weights="model", finetunes=frozenset({"lora", "full", "head", "head_full"}),
        prompt="last_user_turn", confidence="head_softmax",
        no_baseline="an encoder classifier has no trained head before customization, and no prompt to put examples in"),
    trainer="services.models.students.encoder_classifier.trainer:EncoderClassifierTrainer",
    load_runtime=load_runtime, answer=answer, chat=chat)
