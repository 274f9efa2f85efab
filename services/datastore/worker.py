"""The datastore worker's tasks (queue `datastore`): thin — parse the payload, call the service, return ids."""

from __future__ import annotations

from typing import Any

from celery import Celery

from services.datastore.service import build_for_workload
from services.domain.datasets import DatasetRef
from services.domain.jobs import JobReporter
from services.domain.settings import Settings
from services.domain.stage_runner import StageContext, run_stage
from services.domain.tasks import BUILD_DATASET, QUEUE_OF, BuildDatasetPayload


def register(app: Celery, settings: Settings, reporter: JobReporter | None = None) -> None:
    @app.task(name=BUILD_DATASET, queue=QUEUE_OF[BUILD_DATASET], acks_late=True, bind=True, shared=False)
    def build_dataset_task(self: Any, upstream: dict[str, Any] | None = None, *, payload: dict[str, Any]) -> dict[str, Any]:
        """Build the workload's dataset; idempotent (the same logs and config give the same id)."""
        request = BuildDatasetPayload.model_validate(payload)

        def work(ctx: StageContext) -> dict[str, Any]:
            ref = build_for_workload(settings, workload_id=request.workload_id, client_id=request.client_id,
                                     overrides=request.overrides or None)
            return {"dataset_id": ref.dataset_id, "workload_type": ref.workload_type,
                    "counts": {name: split["count"] for name, split in ref.splits.items()},
                    "labels": ref.labels(), "teacher_usage": teacher_usage(ref)}

        return run_stage(self, reporter, request.job, work, upstream=upstream)


def teacher_usage(dataset: DatasetRef) -> dict[str, float] | None:
    """Mean prompt/completion tokens of the teacher's eval answers, when the logs carry usage."""
    usages = [u for r in dataset.read_split("eval") if isinstance(u := r.get("response", {}).get("usage"), dict)
              and isinstance(u.get("prompt_tokens"), int)]
    if not usages:
        return None
    return {"prompt_tokens": sum(u["prompt_tokens"] for u in usages) / len(usages),
            "completion_tokens": sum(u.get("completion_tokens", 0) for u in usages) / len(usages)}
