"""The evaluator worker's task (queue `evaluator`): one evaluation of one candidate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from celery import Celery

from services.domain.artifacts import find_artifacts
from services.domain.errors import InsufficientData
from services.domain.evaluation import EvalKind
from services.domain.settings import Settings
from services.domain.tasks import EVALUATE, QUEUE_OF, EvaluatePayload
from services.evaluator.runner import evaluate


def register(app: Celery, settings: Settings) -> None:
    @app.task(name=EVALUATE, queue=QUEUE_OF[EVALUATE], acks_late=True)
    def evaluate_task(payload: dict[str, Any]) -> dict[str, Any]:
        """Evaluate and return the public result (f1_vs_teacher / score_vs_teacher names)."""
        request = EvaluatePayload.model_validate(payload)
        artifact = None
        if request.artifact_id is not None:
            matches = [a for a in find_artifacts(Path(settings.artifacts.root), candidate=request.candidate)
                       if a.artifact_id == request.artifact_id]
            if not matches:
                raise InsufficientData(f"no artifact {request.artifact_id[:12]} of {request.candidate}")
            artifact = matches[0]
        result = evaluate(settings, candidate=request.candidate, dataset_id=request.dataset_id,
                          kind=EvalKind(request.kind), artifact=artifact)
        return result.to_public()
