"""The customizer worker's task (queue `customizer`, GPU nodes in production): train one candidate.

Idempotent and resumable (`train_candidate`), so `acks_late` re-delivery after a crash resumes
from the last checkpoint instead of starting over. Bounded by the worker's concurrency, never by
one task waiting on another. Progress (step, loss, examples/s, ETA) goes to the job's stage row;
the job's cancel flag stops the run at the next step (its checkpoint is kept).
"""

from __future__ import annotations

import shutil
from typing import Any

from celery import Celery

from services.customizer.service import plan_training, train_candidate
from services.domain.artifacts import TrainingProgress
from services.domain.datasets import datasets_root, load_dataset
from services.domain.errors import TrainingCancelled
from services.domain.jobs import JobReporter
from services.domain.settings import Settings
from services.domain.stage_runner import StageContext, run_stage
from services.domain.tasks import QUEUE_OF, TRAIN, TrainPayload, upstream_value
from services.models.training.base import TrainControl


def register(app: Celery, settings: Settings, reporter: JobReporter | None = None) -> None:
    @app.task(name=TRAIN, queue=QUEUE_OF[TRAIN], acks_late=True, bind=True, shared=False)
    def train_task(self: Any, upstream: dict[str, Any] | None = None, *, payload: dict[str, Any]) -> dict[str, Any]:
        """Train (or find, or resume) the candidate's student on the dataset; return its artifact id."""
        request = TrainPayload.model_validate(payload)

        def work(ctx: StageContext) -> dict[str, Any]:
            dataset_id = upstream_value(request.dataset_id, upstream, "dataset_id")

            def on_progress(progress: TrainingProgress) -> None:
                fraction = progress.step / progress.max_steps if progress.max_steps else None
                ctx.progress(fraction, detail=progress.model_dump(mode="json"))

            control = TrainControl(on_progress=on_progress, should_cancel=ctx.cancelled, report_every_s=2.0)
            try:
                artifact = train_candidate(settings, request.candidate, dataset_id,
                                           overrides=request.overrides or None, control=control)
            except TrainingCancelled:
                _remove_checkpoints(settings, request.candidate, dataset_id, request.overrides or None)
                raise
            return {"dataset_id": dataset_id, "artifact_id": artifact.artifact_id, "path": artifact.path,
                    "kind": artifact.kind, "size_bytes": artifact.size_bytes,
                    "metrics": {k: artifact.metrics.get(k) for k in (
                        "steps", "train_loss", "best_val_loss", "best_step", "examples_per_s", "train_seconds",
                        "stopped_early", "train_examples", "val_history", "resumed_from_step", "mean_input_tokens",
                        "pruned", "prompt_tokens_unpruned_mean", "prompt_tokens_pruned_mean", "truncated_examples",
                        "max_seq_length", "head", "oof_macro_f1", "encode_seconds", "ranking", "head_C",
                        "head_oof_macro_f1")},
                    "prompt_tag": artifact.prompt_tag}

        return run_stage(self, reporter, request.job, work, upstream=upstream)


def _remove_checkpoints(settings: Settings, candidate: str, dataset_id: str, overrides: dict[str, Any] | None) -> None:
    """A cancelled job cleans up: its run's checkpoints go (a crash, unlike a cancel, keeps them to resume)."""
    dataset = load_dataset(datasets_root(settings.artifacts.root), dataset_id)
    work_dir = plan_training(settings, candidate, dataset, overrides=overrides).work_dir
    shutil.rmtree(work_dir, ignore_errors=True)
