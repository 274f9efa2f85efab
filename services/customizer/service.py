"""The customizer's entry point: candidate name + dataset id -> a trained StudentArtifact.

Idempotent: the same candidate, base model, dataset and hyperparameters map to the same artifact
directory; if it is already complete it is returned as is, and an interrupted run resumes from
its last checkpoint. This is what makes the Celery task safe to re-deliver (acks_late).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from services.domain.artifacts import StudentArtifact
from services.domain.datasets import DatasetRef, datasets_root, load_dataset
from services.domain.errors import ConfigError, TrainingFailed
from services.domain.layout import ArtifactLayout
from services.domain.prompts import StaticPrompt, resolve_pruning, task_tag
from services.domain.settings import (
    CandidateSettings,
    LoraSettings,
    Settings,
    TrainingSettings,
    format_validation_error,
)
from services.domain.students import base_family
from services.models.cache import ModelCache
from services.models.students.registry import kind_spec, trainer_for
from services.models.training.artifacts import load_artifact
from services.models.training.base import TrainControl, TrainRequest

log = logging.getLogger(__name__)


def effective_training(settings: Settings, candidate: CandidateSettings) -> tuple[TrainingSettings, LoraSettings]:
    """The global `training`/`lora` sections with the candidate's overrides applied."""
    training = settings.training.model_copy(update=candidate.training.model_dump(exclude_none=True))
    lora = settings.lora.model_copy(update=candidate.lora.model_dump(exclude_none=True))
    return TrainingSettings.model_validate(training.model_dump()), LoraSettings.model_validate(lora.model_dump())


def plan_training(
    settings: Settings, candidate_name: str, dataset: DatasetRef, *, overrides: dict[str, Any] | None = None
) -> TrainRequest:
    """Resolve a candidate against the config, the model cache and the dataset; check they fit."""
    candidate = settings.candidate(candidate_name)
    spec = kind_spec(candidate.kind)
    kind = spec.kind
    workload_type = dataset.workload_type
    if workload_type not in spec.learns:
        raise ConfigError(
            f"candidate {candidate.name!r} ({kind}) cannot learn a {workload_type} workload; "
            f"it learns {sorted(spec.learns)}"
        )
    training, lora = effective_training(settings, candidate)
    if overrides:
        try:
            training = TrainingSettings.model_validate({**training.model_dump(), **overrides})
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, source="training overrides", model=TrainingSettings)) from None
    if training.finetune not in spec.finetunes:
        raise ConfigError(f"candidate {candidate.name!r}: training.finetune {training.finetune!r} does not apply to "
                          f"{kind} students (they take {', '.join(sorted(spec.finetunes))})")
    cache = ModelCache(settings.models)
    model = cache.spec(candidate.model)
    if model.kind != base_family(spec.kind):
        raise ConfigError(f"candidate {candidate.name!r} is {kind} but model {candidate.model!r} is a {model.kind}")
    base_path = cache.path(candidate.model)
    cached = cache.cached(candidate.model)
    base_sha = (hashlib.sha256(json.dumps(cached.files, sort_keys=True).encode()).hexdigest()
                if cached is not None else None)
    workload = settings.workload(str(dataset.manifest.get("workload_id")))
    teacher_path = None
    if spec.serves == "embeddings" and candidate.teacher_model is not None:
        teacher_path = cache.path(candidate.teacher_model)
    # Settings refuse judge_relevance without an enabled evaluation.judge.
    judge = settings.evaluation.judge if spec.serves == "embeddings" and settings.distillation.judge_relevance else None
    static = StaticPrompt.model_validate(dataset.manifest["static_prompt"]) if dataset.manifest.get("static_prompt") else None
    pruned = spec.prompt == "prunable" and resolve_pruning(
        candidate.prune_static_prompt, static, min_ratio=candidate.prune_min_ratio)
    # Trained without the static prompt (pruned, or an encoder that reads the last user turn only): only
    # requests carrying it may reach the student. Students trained on whole prompts record none.
    trained_without = static if pruned or spec.prompt == "last_user_turn" else None
    probe = TrainRequest(
        candidate=candidate.name, kind=kind, base_model=candidate.model, base_model_path=base_path,
        dataset=dataset, training=training, lora=lora, output_dir=Path(), work_dir=Path(),
        label_pattern=workload.label_pattern, labels=workload.labels or dataset.labels() or None,
        teacher_model_path=teacher_path, base_model_sha256=base_sha,
        distillation=settings.distillation if spec.serves == "embeddings" else None,
        static_prompt=trained_without, prompt_tag=task_tag(str(dataset.manifest.get("workload_id"))) if pruned else None,
        relevance_judge=judge,
    )
    run = probe.fingerprint()[:16]
    layout = ArtifactLayout(settings.artifacts.root)
    return TrainRequest(**{**probe.__dict__, "output_dir": layout.student_dir(candidate.name, run),
                           "work_dir": layout.work_dir(candidate.name, run)})


def train_candidate(
    settings: Settings,
    candidate_name: str,
    dataset_id: str,
    *,
    control: TrainControl | None = None,
    overrides: dict[str, Any] | None = None,
) -> StudentArtifact:
    """Train (or find already trained) one candidate on one dataset."""
    dataset = load_dataset(datasets_root(settings.artifacts.root), dataset_id)
    request = plan_training(settings, candidate_name, dataset, overrides=overrides)
    try:
        existing = load_artifact(request.output_dir)
        log.info("%s: already trained on %s -> %s", candidate_name, dataset.dataset_id[:12], request.output_dir)
        return existing
    except FileNotFoundError:
        pass
    trainer = trainer_for(request.kind)
    from services.models.runtime.threads import torch_threads

    try:
        with torch_threads("train") as threads:
            log.info("%s: training with %d torch threads", candidate_name, threads)
            return trainer.train(request, control or TrainControl())
    except MemoryError as exc:
        raise TrainingFailed(f"{candidate_name}: out of host memory; lower training.batch_size", reason="out_of_memory") from exc
