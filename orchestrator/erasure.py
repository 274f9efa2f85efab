"""Erase a client's data: its logs, every dataset built from them, and every student trained on
those datasets (lineage: a dataset's records carry their client id; an artifact records the
sha256 of the splits it was trained on). One audit event records what was removed.

A dataset built for all clients that contains even one record of the client is erased too (it
cannot be partially un-built); the next job rebuilds from the remaining logs. Students trained on
an erased dataset are retired: their files are deleted, so no serving backend can load them.
"""

from __future__ import annotations

import shutil
from typing import Any

from orchestrator.jobs.store import JobStore
from services.datastore.stores import open_log_store
from services.domain.artifacts import find_artifacts
from services.domain.datasets import DatasetRef, stored_datasets
from services.domain.layout import ArtifactLayout
from services.domain.settings import Settings


def _contains_client(ref: DatasetRef, client_id: str) -> bool:
    if ref.manifest.get("source_query", {}).get("client_id") == client_id:
        return True
    return any(record.get("client_id") == client_id for split in ref.splits for record in ref.read_split(split))


def erase_client(settings: Settings, jobs: JobStore, client_id: str, *, actor: str | None = None) -> dict[str, Any]:
    store = open_log_store(settings.log_store, settings.ingest)
    try:
        logs_deleted = store.delete(client_id=client_id)
    finally:
        store.close()
    layout = ArtifactLayout(settings.artifacts.root)
    erased: dict[str, set[str]] = {}  # dataset id -> split sha256s
    for ref in stored_datasets(layout.datasets.root):
        if _contains_client(ref, client_id):
            erased[ref.dataset_id] = {split["sha256"] for split in ref.splits.values()}
            layout.datasets.delete(ref.dataset_id)
            layout.delete_evaluations(ref.dataset_id)
    blobs = layout.datasets.collect_unused_blobs() if erased else []
    hashes = set().union(*erased.values()) if erased else set()
    retired = []
    for artifact in find_artifacts(layout.root):
        if artifact.dataset_id in erased or hashes & set(artifact.dataset_hashes.values()):
            shutil.rmtree(artifact.path, ignore_errors=True)
            retired.append({"artifact_id": artifact.artifact_id, "candidate": artifact.candidate})
    report = {"client_id": client_id, "logs_deleted": logs_deleted, "datasets_erased": sorted(erased),
              "blobs_removed": len(blobs), "students_retired": retired}
    event = jobs.add_event("client.data_erased", actor=actor, client_id=client_id, detail=report)
    return {**report, "audit_event_id": event.id}
