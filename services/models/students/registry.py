"""The registry of student kinds: one list of kind packages, and the lookups every part makes into it.

A kind package (`services/models/students/<kind>/`) holds everything kind-specific: its `KindSpec`,
trainer, runtime loader, evaluator answerer and serving adapter (`kind.StudentKindPackage`). Adding a
kind is its folder plus its line in `services.domain.students.KIND_PACKAGES`. Packages are imported by name when first asked
for (as peft maps a method name to its tuner); none imports torch until a student is trained or loaded.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.domain.students import KIND_PACKAGES, KINDS, KindSpec, register_kind
from services.models.cache import ModelCache

if TYPE_CHECKING:
    from services.models.students.kind import Answerer, ChatAdapter, StudentKindPackage
    from services.models.training.base import StudentTrainer

_LOADED: dict[str, StudentKindPackage] = {}


def registered() -> dict[str, StudentKindPackage]:
    """Every registered kind package by its kind (each imported and its spec stored the first time)."""
    for kind, ref in KIND_PACKAGES.items():
        name = ref.package
        if name not in _LOADED:
            package: StudentKindPackage = importlib.import_module(name).KIND
            if package.spec.kind != kind:
                raise ValueError(f"{name} defines kind {package.spec.kind!r}, registered as {kind!r}")
            if KINDS.get(package.spec.kind) is not package.spec:
                register_kind(package.spec)  # a second package of the same kind fails here
            _LOADED[name] = package
    return {package.spec.kind: package for package in _LOADED.values()}


def package_of(kind: str) -> StudentKindPackage:
    """The registered package of a kind (a config literal, a route's `student_kind` or the enum)."""
    packages = registered()
    try:
        return packages[str(kind)]
    except KeyError:
        raise ValueError(f"unknown student kind {kind!r}; registered: {', '.join(packages)}") from None


def kind_spec(kind: str) -> KindSpec:
    """The registered spec of a kind."""
    return package_of(kind).spec


def trainer_for(kind: str) -> StudentTrainer:
    """A trainer of the kind (its module, and torch, imported now)."""
    module, _, name = package_of(kind).trainer.partition(":")
    trainer: StudentTrainer = getattr(importlib.import_module(module), name)()
    return trainer


def load_runtime(kind: str, cache: ModelCache, *, base_model: str, artifact_dir: Path | None) -> Any:
    """The runtime of a trained student (`artifact_dir`), or of its untrained base model when None."""
    return package_of(kind).load_runtime(cache, base_model, artifact_dir)


def answerer_for(kind: str) -> Answerer:
    """How the kind answers a chat workload's eval records (the evaluator)."""
    return package_of(kind).answer


def chat_adapter_for(kind: str) -> ChatAdapter:
    """How a loaded student of the kind answers a served chat request (the local serving backend)."""
    return package_of(kind).chat
