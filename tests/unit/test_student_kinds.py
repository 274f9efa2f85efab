"""The student-kind registry is the one list of kinds: every lookup finds every registered kind, a new one included."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.deployment.backends.local import LocalBackend
from services.deployment.routes import Route
from services.domain.artifacts import StudentArtifact
from services.domain.settings import Settings
from services.domain.students import KIND_PACKAGES, KINDS, KindRef, KindSpec, StudentKind, register_kind
from services.models.cache import ModelCache
from services.models.students import registry
from services.models.students.registry import (
    answerer_for,
    chat_adapter_for,
    kind_spec,
    load_runtime,
    registered,
    trainer_for,
)


@pytest.fixture
def restored_registry() -> Iterator[None]:
    """Whatever a test registers is gone afterwards."""
    kinds, loaded = dict(KINDS), dict(registry._LOADED)
    yield
    KINDS.clear()
    KINDS.update(kinds)
    registry._LOADED.clear()
    registry._LOADED.update(loaded)


def test_every_kind_is_registered_once() -> None:
    packages = registered()
    assert set(packages) == set(StudentKind) and len(packages) == len(registry.KIND_PACKAGES)
    assert all(package.spec.kind is kind and KINDS[kind] is package.spec for kind, package in packages.items())


def test_the_config_accepts_exactly_the_registered_kinds() -> None:
    assert set(KIND_PACKAGES) == set(registered())
    candidate = {"name": "s2s", "model": "smollm2-135m-instruct", "kind": "seq2seq"}
    with pytest.raises(ValueError, match="unknown student kind 'seq2seq'; registered: causal_lm_lora"):
        Settings.model_validate({"candidates": [candidate]})


@pytest.mark.parametrize("kind", list(StudentKind))
def test_each_trainer_resolves_and_is_the_trainer_of_its_kind(kind: StudentKind) -> None:
    assert trainer_for(kind).kind is kind


def test_a_kind_registers_once_and_an_unknown_kind_is_named() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        register_kind(kind_spec(StudentKind.CAUSAL_LM_LORA))
    with pytest.raises(ValueError, match="unknown student kind 'seq2seq'.*causal_lm_lora"):
        kind_spec("seq2seq")
    assert kind_spec("encoder_classifier") is KINDS[StudentKind.ENCODER_CLASSIFIER]


def test_what_each_kind_serves_and_how_it_is_sure() -> None:
    specs = {kind: package.spec for kind, package in registered().items()}
    served = {kind.value: (spec.serves, spec.confidence) for kind, spec in specs.items()}
    assert served == {"causal_lm_lora": ("chat", "label_scores"), "encoder_classifier": ("chat", "head_softmax"),
                      "embedding_distill": ("embeddings", "none")}
    chat: list[KindSpec] = [s for s in specs.values() if s.serves == "chat"]
    assert all(s.learns - {"embedding"} == s.learns for s in chat), "a chat student cannot learn an embedding workload"
    # Base/ICL baselines prompt the untrained model: only a kind that takes a prompt has them.
    assert {s.kind for s in specs.values() if s.no_baseline is None} == {StudentKind.CAUSAL_LM_LORA}


# A fourth kind, in its own folder: a "model" that echoes the last message, reversed.
TOY_KIND = {
    "__init__.py": '''
        from services.domain.students import KindSpec
        from services.models.students.answering import Answers
        from services.models.students.kind import StudentKindPackage


        class Reverser:
            def __init__(self, where):
                self.where = where

            def answer(self, text):
                return text[::-1]


        def load_runtime(cache, base_model, artifact_dir):
            return Reverser(artifact_dir or base_model)


        def answer(run):
            runner = run.runtime("toy_reverser")
            return Answers(["?"], [runner.answer("ab")], [0.0])


        def chat(runner, route, body):
            return runner.answer(body["messages"][-1]["content"]), {"where": str(runner.where)}


        KIND = StudentKindPackage(
            spec=KindSpec(kind="toy_reverser", serves="chat", learns=frozenset({"chat"}),
                          weights="model", finetunes=frozenset({"full"}), prompt="none", confidence="none"),
            trainer="toy_reverser.trainer:ReverserTrainer", load_runtime=load_runtime, answer=answer, chat=chat)
    ''',
    "trainer.py": '''
        class ReverserTrainer:
            kind = "toy_reverser"

            def train(self, request, control):
                raise NotImplementedError
    ''',
}


def test_a_fourth_kind_in_one_folder_is_found_by_every_lookup(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restored_registry: None) -> None:
    for name, text in TOY_KIND.items():
        path = tmp_path / "toy_reverser" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "toy_reverser" not in registered()

    monkeypatch.setitem(KIND_PACKAGES, "toy_reverser", KindRef("toy_reverser", base_family="causal_lm"))  # the line

    # The config and the artifact record take it (with a base model of the family its line names) ...
    candidate = {"name": "toy", "model": "smollm2-135m-instruct", "kind": "toy_reverser"}
    assert Settings.model_validate({"candidates": [candidate]}).candidates[0].kind == "toy_reverser"
    artifact = {"artifact_id": "a" * 64, "candidate": "toy", "kind": "toy_reverser", "base_model": "base",
                "dataset_id": "d", "dataset_hashes": {}, "workload_id": "w", "workload_type": "chat",
                "hyperparameters": {}, "metrics": {}, "code_version": "test", "files": {}, "size_bytes": 0,
                "path": str(tmp_path), "created_at": 0.0}
    assert StudentArtifact.model_validate(artifact).kind == "toy_reverser"
    with pytest.raises(ValueError, match="unknown student kind"):
        StudentArtifact.model_validate({**artifact, "kind": "seq2seq"})
    # ... and every lookup finds it.

    assert kind_spec("toy_reverser").serves == "chat" and KINDS["toy_reverser"].weights == "model"
    assert type(trainer_for("toy_reverser")).__name__ == "ReverserTrainer"
    settings = Settings.model_validate({})
    runtime = load_runtime("toy_reverser", ModelCache(settings.models), base_model="base", artifact_dir=tmp_path)
    assert runtime.answer("flywheel") == "leehwylf"
    assert answerer_for("toy_reverser").__module__ == "toy_reverser"
    assert chat_adapter_for("toy_reverser")(runtime, Route(workload_id="w"), {"messages": [
        {"role": "user", "content": "abc"}]}) == ("cba", {"where": str(tmp_path)})
    # The local serving backend serves it through the registry, as it serves the built-in kinds.
    route = Route(workload_id="w", phase="full", candidate="toy", student_kind="toy_reverser", base_model="base",
                  artifact_path=str(tmp_path))
    completion = LocalBackend(settings).chat(route, {"messages": [{"role": "user", "content": "student"}]})
    assert completion["choices"][0]["message"]["content"] == "tneduts"
    assert completion["choices"][0]["flywheel"] == {"where": str(tmp_path)}
