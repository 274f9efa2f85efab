"""The student-kind registry is the one list of kinds: every table keyed by kind covers every registered kind."""

from __future__ import annotations

import typing

import pytest

from services.customizer.service import TRAINERS, trainer_for
from services.deployment.backends.local import CHAT_ADAPTERS
from services.domain.settings import CandidateSettings
from services.domain.students import KINDS, KindSpec, StudentKind, kind_spec, register_kind
from services.evaluator.runner import ANSWERERS
from services.models.runtime.students import RUNTIMES

# Each service's table of code that differs by kind (docs/architecture.md, "Where to add a student kind").
TABLES = {"customizer TRAINERS": TRAINERS, "evaluator ANSWERERS": ANSWERERS, "models RUNTIMES": RUNTIMES,
          "deployment CHAT_ADAPTERS": CHAT_ADAPTERS}


def test_every_kind_is_registered_once() -> None:
    assert set(KINDS) == set(StudentKind)
    assert all(spec.kind is kind for kind, spec in KINDS.items())


@pytest.mark.parametrize("table", sorted(TABLES))
def test_every_registered_kind_has_an_entry_in_every_table(table: str) -> None:
    assert set(TABLES[table]) == set(KINDS), f"{table} lacks {set(KINDS) - set(TABLES[table])}"


def test_the_config_accepts_exactly_the_registered_kinds() -> None:
    allowed = typing.get_args(CandidateSettings.model_fields["kind"].annotation)
    assert set(allowed) == {kind.value for kind in KINDS}


@pytest.mark.parametrize("kind", list(StudentKind))
def test_each_trainer_resolves_and_is_the_trainer_of_its_kind(kind: StudentKind) -> None:
    assert trainer_for(kind).kind is kind


def test_a_kind_registers_once_and_an_unknown_kind_is_named() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        register_kind(KINDS[StudentKind.CAUSAL_LM_LORA])
    with pytest.raises(ValueError, match="unknown student kind 'seq2seq'.*causal_lm_lora"):
        kind_spec("seq2seq")
    assert kind_spec("encoder_classifier") is KINDS[StudentKind.ENCODER_CLASSIFIER]


def test_what_each_kind_serves_and_how_it_is_sure() -> None:
    served = {kind.value: (spec.serves, spec.confidence) for kind, spec in KINDS.items()}
    assert served == {"causal_lm_lora": ("chat", "label_scores"), "encoder_classifier": ("chat", "head_softmax"),
                      "embedding_distill": ("embeddings", "none")}
    chat: list[KindSpec] = [s for s in KINDS.values() if s.serves == "chat"]
    assert all(s.learns - {"embedding"} == s.learns for s in chat), "a chat student cannot learn an embedding workload"
    # Base/ICL baselines prompt the untrained model: only a kind that takes a prompt has them.
    assert {s.kind for s in KINDS.values() if s.no_baseline is None} == {StudentKind.CAUSAL_LM_LORA}
