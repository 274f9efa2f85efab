"""What a student kind is, as plain data, and the store of registered kinds.

The kinds themselves live in the model plane, one package each (`services/models/students/<kind>/`,
holding the kind's `KindSpec`, trainer, runtime loader, evaluator answerer and serving adapter).
`KIND_PACKAGES` below is the one list of them, as plain data (each kind's name, package and the
`models.registry` kind its base model must be), so that config validation and records in the domain
know every kind without importing the model plane; `services.models.students.registry` imports the
packages by name when first asked, which fills the store of specs.
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


@dataclass(frozen=True)
class KindRef:
    """A registered kind, as the registry line names it."""

    package: str  # its package in the model plane, imported by name when first asked for
    base_family: Literal["causal_lm", "encoder"]  # the `models.registry` kind its base model must be


# The one list of student kinds (the registry line of each): a new kind is its package plus a line here.
KIND_PACKAGES: dict[str, KindRef] = {
    "causal_lm_lora": KindRef("services.models.students.causal_lm_lora", base_family="causal_lm"),
    "encoder_classifier": KindRef("services.models.students.encoder_classifier", base_family="encoder"),
    "embedding_distill": KindRef("services.models.students.embedding_distill", base_family="encoder"),
}


def registered_kind(kind: str) -> str:
    """`kind` if it is registered, else a ValueError naming the registered kinds (config and record validation)."""
    if str(kind) not in KIND_PACKAGES:
        raise ValueError(f"unknown student kind {kind!r}; registered: {', '.join(KIND_PACKAGES)}")
    return str(kind)


def base_family(kind: str) -> Literal["causal_lm", "encoder"]:
    """The `models.registry` kind a student of this kind is built from."""
    return KIND_PACKAGES[registered_kind(kind)].base_family


KINDS: dict[str, KindSpec] = {}


def register_kind(spec: KindSpec) -> KindSpec:
    """Add a kind to the store (once)."""
    if spec.kind in KINDS:
        raise ValueError(f"student kind {spec.kind!r} is registered twice")
    KINDS[spec.kind] = spec
    return spec
