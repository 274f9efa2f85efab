"""What a student kind is, as plain data, and the store of registered kinds.

The kinds themselves live in the model plane, one package each (`services/models/students/<kind>/`,
holding the kind's `KindSpec`, trainer, runtime loader, evaluator answerer and serving adapter);
`services.models.students.registry.KIND_PACKAGES` is the one list of them. Loading that list fills
this store. The types stay here, in the domain, because records below the model plane name them
(`StudentArtifact.kind`, the candidates' `kind` in config) and the domain may import nothing above it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal


class StudentKind(StrEnum):
    """The built-in kinds (matches `candidates[].kind` in config); a registered kind is looked up by its string."""

    CAUSAL_LM_LORA = "causal_lm_lora"
    ENCODER_CLASSIFIER = "encoder_classifier"
    EMBEDDING_DISTILL = "embedding_distill"


@dataclass(frozen=True)
class KindSpec:
    """What a student kind is, for every part that must treat kinds differently."""

    kind: str  # its config literal (a `StudentKind` for the built-in kinds)
    serves: Literal["chat", "embeddings"]  # the OpenAI endpoint its students answer
    learns: frozenset[str]  # the workload types it can be trained on
    base_family: Literal["causal_lm", "encoder"]  # the `models.registry` kind its base model must be
    weights: Literal["adapter", "model"]  # adapter: LoRA weights over a shared base; model: a whole model of its own
    finetunes: frozenset[str]  # the `training.finetune` modes that apply
    # prunable: trained on whole prompts unless the static part is pruned; last_user_turn: reads the last user
    # turn only, so it is always trained without the static prompt; none: takes no prompt.
    prompt: Literal["prunable", "last_user_turn", "none"]
    # How a selective/cascade confidence is obtained: label_scores: each rendered label answer scored by the
    # model (constrained decoding, needs the labels and answer template); head_softmax: the classifier head's
    # top probability; none: no confidence (embeddings).
    confidence: Literal["label_scores", "head_softmax", "none"]
    no_baseline: str | None = None  # why base/ICL evaluations do not apply (None: they do)


KINDS: dict[str, KindSpec] = {}


def register_kind(spec: KindSpec) -> KindSpec:
    """Add a kind to the store (once)."""
    if spec.kind in KINDS:
        raise ValueError(f"student kind {spec.kind!r} is registered twice")
    KINDS[spec.kind] = spec
    return spec


def kind_spec(kind: str) -> KindSpec:
    """The stored spec of a kind (a config literal, a route's `student_kind` or the enum).

    Only kinds already loaded are found: services ask `services.models.students.registry.kind_spec`,
    which loads the registered kind packages first.
    """
    try:
        return KINDS[str(kind)]
    except KeyError:
        raise ValueError(f"unknown student kind {kind!r}; registered: {', '.join(KINDS)}") from None
