"""The customizer worker's task (queue `customizer`, GPU nodes in production): train one candidate.

Idempotent and resumable (`train_candidate`), so `acks_late` re-delivery after a crash resumes
from the last checkpoint instead of starting over. Bounded by the worker's concurrency, never by
one task waiting on another.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from services.customizer.service import train_candidate
from services.domain.settings import Settings
from services.domain.tasks import QUEUE_OF, TRAIN, TrainPayload


def register(app: Celery, settings: Settings) -> None:
    @app.task(name=TRAIN, queue=QUEUE_OF[TRAIN], acks_late=True)
    def train_task(payload: dict[str, Any]) -> dict[str, Any]:
        """Train (or find, or resume) the candidate's student on the dataset; return its artifact id."""
        request = TrainPayload.model_validate(payload)
        artifact = train_candidate(settings, request.candidate, request.dataset_id,
                                   overrides=request.overrides or None)
        return {"artifact_id": artifact.artifact_id, "path": artifact.path, "metrics": {
            k: artifact.metrics.get(k) for k in ("steps", "best_val_loss", "examples_per_s", "train_seconds")}}
