"""The datastore worker's tasks (queue `datastore`): thin — parse the payload, call the service, return ids."""

from __future__ import annotations

from typing import Any

from celery import Celery

from services.datastore.service import build_for_workload
from services.domain.settings import Settings
from services.domain.tasks import BUILD_DATASET, QUEUE_OF, BuildDatasetPayload


def register(app: Celery, settings: Settings) -> None:
    @app.task(name=BUILD_DATASET, queue=QUEUE_OF[BUILD_DATASET], acks_late=True)
    def build_dataset_task(payload: dict[str, Any]) -> dict[str, Any]:
        """Build the workload's dataset; idempotent (the same logs and config give the same id)."""
        request = BuildDatasetPayload.model_validate(payload)
        ref = build_for_workload(settings, workload_id=request.workload_id, client_id=request.client_id,
                                 overrides=request.overrides or None)
        return {"dataset_id": ref.dataset_id, "workload_type": ref.workload_type,
                "counts": {name: split["count"] for name, split in ref.splits.items()}}
