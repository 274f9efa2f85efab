"""What every student trainer takes and gives: one Protocol, a request, and run controls.

A trainer turns (base model, dataset, settings) into a `StudentArtifact`. The three kinds
(causal-LM LoRA, encoder classifier, embedding distillation) are registered by their config
literal in `services.models.students.registry`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from services.domain.artifacts import StudentArtifact, TrainingProgress
from services.domain.datasets import DatasetRef
from services.domain.prompts import StaticPrompt
from services.domain.settings import DistillationSettings, JudgeSettings, LoraSettings, TrainingSettings


@dataclass(frozen=True)
class TrainRequest:
    """Everything a trainer needs; built by `services.customizer.service.plan_training`."""

    candidate: str
    kind: str  # its registered kind (a `StudentKind` for the built-in kinds)
    base_model: str  # registry name
    base_model_path: Path  # the cached model directory
    dataset: DatasetRef
    training: TrainingSettings
    lora: LoraSettings
    output_dir: Path  # where the finished artifact goes
    work_dir: Path  # checkpoints; the same request always maps to the same work_dir (resume)
    label_pattern: str | None = None  # classification workloads
    labels: list[str] | None = None
    teacher_model_path: Path | None = None  # embedding distillation when logs lack vectors
    base_model_sha256: str | None = None  # sha256 over the cached base model's file hashes
    distillation: DistillationSettings | None = None  # embedding distillation losses and Matryoshka dims
    static_prompt: StaticPrompt | None = None  # trained without it (pruned causal LMs; encoder classifiers)
    prompt_tag: str | None = None  # what replaces the pruned system prompt (causal LMs)
    relevance_judge: JudgeSettings | None = None  # embedding distillation with distillation.judge_relevance

    def hyperparameters(self) -> dict[str, Any]:
        params = {"training": self.training.model_dump(mode="json"), "lora": self.lora.model_dump(mode="json")}
        if self.distillation is not None:
            params["distillation"] = self.distillation.model_dump(mode="json")
        if self.relevance_judge is not None:  # which judge graded the lists (never its key)
            params["relevance_judge"] = {"base_url": self.relevance_judge.base_url, "model": self.relevance_judge.model}
        if self.prompt_tag is not None and self.static_prompt is not None:
            params["prune_static_prompt"] = {"static_sha256": self.static_prompt.sha256, "tag": self.prompt_tag}
        return params

    def fingerprint(self) -> str:
        """Identity of the run: same candidate, base, data and hyperparameters -> same checkpoints."""
        key = {
            "candidate": self.candidate,
            "kind": str(self.kind),
            "base_model": self.base_model,
            "dataset_id": self.dataset.dataset_id,
            "hyperparameters": self.hyperparameters(),
        }
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


@dataclass
class TrainControl:
    """How the caller watches and steers a run: progress callback, cancel flag, cadence."""

    on_progress: Callable[[TrainingProgress], None] | None = None
    should_cancel: Callable[[], bool] | None = None
    report_every_s: float = 5.0
    extra: dict[str, Any] = field(default_factory=dict)

    def cancelled(self) -> bool:
        return bool(self.should_cancel and self.should_cancel())


class StudentTrainer(Protocol):
    """Train one kind of student."""

    kind: str  # a registered student kind

    def train(self, request: TrainRequest, control: TrainControl) -> StudentArtifact:
        """Train (resuming from the last checkpoint in `request.work_dir` if any) and write the artifact."""
        ...
