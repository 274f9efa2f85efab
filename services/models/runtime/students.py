"""How each student kind is loaded to answer requests: the model plane's table of runtimes.

The evaluator and the `local` serving backend load students through `load_runtime`, so a student is
evaluated by the same code that serves it. Each loader imports its runtime (and torch) when called.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from services.domain.students import StudentKind
from services.models.cache import ModelCache

# (cache, base model name, artifact directory or None for the untrained base model) -> a runtime.
RuntimeLoader = Callable[[ModelCache, str, Path | None], Any]


def _causal_lm(cache: ModelCache, base_model: str, artifact_dir: Path | None) -> Any:
    from services.models.runtime.causal_lm import CausalLMRunner

    return CausalLMRunner(cache.path(base_model), adapter_path=artifact_dir / "adapter" if artifact_dir else None)


def _classifier(cache: ModelCache, base_model: str, artifact_dir: Path | None) -> Any:
    from services.models.runtime.classifier import ClassifierRunner

    if artifact_dir is None:
        raise ValueError("an encoder classifier has no head before it is trained: it needs its artifact")
    return ClassifierRunner(artifact_dir / "model")


def _embedder(cache: ModelCache, base_model: str, artifact_dir: Path | None) -> Any:
    from services.models.runtime.embedder import Embedder

    return Embedder(artifact_dir if artifact_dir is not None else cache.path(base_model))


RUNTIMES: dict[StudentKind, RuntimeLoader] = {
    StudentKind.CAUSAL_LM_LORA: _causal_lm,
    StudentKind.ENCODER_CLASSIFIER: _classifier,
    StudentKind.EMBEDDING_DISTILL: _embedder,
}


def load_runtime(kind: str | StudentKind, cache: ModelCache, *, base_model: str, artifact_dir: Path | None) -> Any:
    """The runtime of a trained student (`artifact_dir`), or of its untrained base model when None."""
    return RUNTIMES[StudentKind(kind)](cache, base_model, artifact_dir)
