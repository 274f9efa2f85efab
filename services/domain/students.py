"""The registry of student kinds: each kind registered once, with what the rest of the platform asks of it.

A `KindSpec` is pure data (what the kind serves, learns, is built from, how it gives a confidence);
code that differs by kind lives in each service's table keyed by `StudentKind`: the customizer's
trainers, the evaluator's answerers, the model plane's runtimes, the deployment's serving adapters.
`tests/unit/test_student_kinds.py` checks every registered kind has an entry in every table.
To add a kind: a member here, its `register_kind(...)` line, and an entry in each table
(docs/architecture.md, "Where to add a student kind").
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal


class StudentKind(StrEnum):
    """How a student is built from its base model (matches `candidates[].kind` in config)."""

    CAUSAL_LM_LORA = "causal_lm_lora"
    ENCODER_CLASSIFIER = "encoder_classifier"
    EMBEDDING_DISTILL = "embedding_distill"


@dataclass(frozen=True)
class KindSpec:
    """What a student kind is, for every part that must treat kinds differently."""

    kind: StudentKind
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


KINDS: dict[StudentKind, KindSpec] = {}


def register_kind(spec: KindSpec) -> KindSpec:
    """Add a kind to the registry (once)."""
    if spec.kind in KINDS:
        raise ValueError(f"student kind {spec.kind.value!r} is registered twice")
    KINDS[spec.kind] = spec
    return spec


def kind_spec(kind: str | StudentKind) -> KindSpec:
    """The registered spec of a kind (a config literal, a route's `student_kind` or the enum)."""
    try:
        return KINDS[StudentKind(kind)]
    except ValueError:
        raise ValueError(f"unknown student kind {kind!r}; registered: {', '.join(KINDS)}") from None


register_kind(KindSpec(
    kind=StudentKind.CAUSAL_LM_LORA, serves="chat", learns=frozenset({"classification", "chat", "tool_calling"}),
    base_family="causal_lm", weights="adapter", finetunes=frozenset({"lora"}), prompt="prunable",
    confidence="label_scores"))
register_kind(KindSpec(
    kind=StudentKind.ENCODER_CLASSIFIER, serves="chat", learns=frozenset({"classification"}),
    base_family="encoder", weights="model", finetunes=frozenset({"lora", "full", "head"}), prompt="last_user_turn",
    confidence="head_softmax",
    no_baseline="an encoder classifier has no trained head before customization, and no prompt to put examples in"))
register_kind(KindSpec(
    kind=StudentKind.EMBEDDING_DISTILL, serves="embeddings", learns=frozenset({"embedding"}),
    base_family="encoder", weights="model", finetunes=frozenset({"lora", "full"}), prompt="none", confidence="none",
    no_baseline="an embedding student takes no prompt, so base/ICL prompting does not apply; "
                "its untrained model is measured as the customized run's baseline instead"))
