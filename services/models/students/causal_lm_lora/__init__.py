"""Causal-LM LoRA students: a LoRA adapter over a shared causal LM, answering chat by generation or label scoring."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.domain.students import KindSpec, StudentKind
from services.models.cache import ModelCache
from services.models.students.causal_lm_lora.answer import answer
from services.models.students.causal_lm_lora.serving import chat
from services.models.students.kind import StudentKindPackage


def load_runtime(cache: ModelCache, base_model: str, artifact_dir: Path | None) -> Any:
    """The base model with the student's adapter merged (or the untrained base model)."""
    from services.models.students.causal_lm_lora.runtime import CausalLMRunner

    return CausalLMRunner(cache.path(base_model), adapter_path=artifact_dir / "adapter" if artifact_dir else None)


KIND = StudentKindPackage(
    spec=KindSpec(
        kind=StudentKind.CAUSAL_LM_LORA, serves="chat", learns=frozenset({"classification", "chat", "tool_calling"}),
        weights="adapter", finetunes=frozenset({"lora"}), prompt="prunable",
        confidence="label_scores"),
    trainer="services.models.students.causal_lm_lora.trainer:CausalLMLoraTrainer",
    load_runtime=load_runtime, answer=answer, chat=chat)
