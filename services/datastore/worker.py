"""The datastore worker's tasks (queue `datastore`): thin — parse the payload, call the service, return ids."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from celery import Celery

from services.datastore.ingest import RawLine
from services.datastore.service import build_for_workload, ingest_batch
from services.domain.datasets import teacher_usage
from services.domain.errors import StoreError
from services.domain.jobs import JobReporter
from services.domain.settings import Settings
from services.domain.stage_runner import StageContext, run_stage
from services.domain.tasks import BUILD_DATASET, INGEST_RECORDS, QUEUE_OF, BuildDatasetPayload, IngestRecordsPayload


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

    @app.task(name=INGEST_RECORDS, queue=QUEUE_OF[INGEST_RECORDS], acks_late=True, bind=True, shared=False,
              autoretry_for=(StoreError,), retry_backoff=True, max_retries=8)
    def ingest_records_task(self: Any, *, payload: dict[str, Any]) -> dict[str, Any]:
        """Store records logged by the gateway; invalid ones are quarantined with a reason. Idempotent on ids."""
        request = IngestRecordsPayload.model_validate(payload)
        return ingest_records(settings, request.records, source=request.source)


def ingest_records(settings: Settings, records: list[dict[str, Any]], *, source: str) -> dict[str, Any]:
    """The same validation, quarantine and summary as `flywheel ingest`, for records sent as dicts."""
    lines = [json.dumps(r, separators=(",", ":")).encode() for r in records]
    raw = [RawLine(i + 1, line, len(line), too_large=len(line) > settings.ingest.max_record_bytes)
           for i, line in enumerate(lines)]
    return ingest_batch(settings, raw, source=source, file_sha256=hashlib.sha256(b"\n".join(lines)).hexdigest())
