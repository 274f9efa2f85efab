"""Task names and payloads: the contract between the orchestrator (which sends tasks BY NAME and
never imports a worker) and the service workers (which register them on their own queue).

Every task takes `payload=` (a keyword argument, a small frozen model sent as JSON) and, inside a
job's canvas, the previous task's envelope as its first positional argument (`upstream`): the
dataset id flows from the build to the trainings and evaluations, the artifact id from a training
to its customized evaluation. Every task returns an envelope ({"ok": true, ...} or
{"ok": false, "error": ...}; see `stage_runner`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.domain.decisions import PromotionDecision
from services.domain.errors import InsufficientData
from services.domain.jobs import JobRef

BUILD_DATASET = "datastore.build_dataset"
INGEST_RECORDS = "datastore.ingest_records"
TRAIN = "customizer.train"
EVALUATE = "evaluator.evaluate"
DECIDE = "orchestrator.decide"
JOB_FAILED = "orchestrator.job_failed"
SCHEDULED_RUN = "orchestrator.scheduled_run"
DEPLOY = "deployment.deploy"
ROUTE_CONTROLLER = "deployment.route_controller"
DRIFT_CHECK = "orchestrator.drift_check"

QUEUE_OF = {BUILD_DATASET: "datastore", INGEST_RECORDS: "datastore", TRAIN: "customizer", EVALUATE: "evaluator", DECIDE: "orchestrator",
            JOB_FAILED: "orchestrator", DEPLOY: "deployment", ROUTE_CONTROLLER: "deployment", SCHEDULED_RUN: "orchestrator", DRIFT_CHECK: "orchestrator"}


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    job: JobRef | None = Field(None, description="The job and stage this task works for (absent when standalone).")


class BuildDatasetPayload(_Payload):
    workload_id: str
    client_id: str | None
    overrides: dict[str, Any] = Field(default_factory=dict, description="Data-section overrides of this job.")


class IngestRecordsPayload(BaseModel):
    """Teacher calls logged by the gateway, as OpenAI-format record dicts (validated by the datastore)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    records: list[dict[str, Any]]
    source: str = "gateway"


class TrainPayload(_Payload):
    dataset_id: str | None = Field(None, description="Default: the upstream build's dataset.")
    candidate: str
    overrides: dict[str, Any] = Field(default_factory=dict, description="Training overrides of this job.")


class EvaluatePayload(_Payload):
    dataset_id: str | None = Field(None, description="Default: the upstream build's (or training's) dataset.")
    candidate: str
    kind: str = Field(description="base | icl | customized")
    artifact_id: str | None = Field(None, description="customized: which artifact (default: the upstream "
                                                      "training's, else the newest on the dataset).")


class DeployPayload(_Payload):
    decision: PromotionDecision = Field(description="The job's decision: chosen, artifact_id, rollout, canary_percent, "
                                                    "and the selective cascade when it has one.")


class WorkloadPayload(BaseModel):
    """A scheduled run or drift check of one workload (sent by Celery beat)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    workload_id: str


class DecidePayload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    job_id: str


def upstream_value(payload_value: str | None, upstream: dict[str, Any] | None, key: str) -> str:
    """A payload field, else the upstream envelope's; an error naming both when neither has it."""
    value = payload_value or (upstream or {}).get(key)
    if not value:
        raise InsufficientData(f"no {key}: give it in the payload or chain the task after one that returns it")
    return str(value)
