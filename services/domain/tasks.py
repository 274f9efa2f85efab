"""Task names and payloads: the contract between the orchestrator (which sends tasks BY NAME and
never imports a worker) and the service workers (which register them on their own queue).

Payloads are small frozen models with required fields, sent as JSON; results are small dicts of ids.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

BUILD_DATASET = "datastore.build_dataset"
TRAIN = "customizer.train"
EVALUATE = "evaluator.evaluate"

QUEUE_OF = {BUILD_DATASET: "datastore", TRAIN: "customizer", EVALUATE: "evaluator"}


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BuildDatasetPayload(_Payload):
    workload_id: str
    client_id: str | None
    overrides: dict[str, Any] = Field(default_factory=dict, description="Data-section overrides of this job.")


class TrainPayload(_Payload):
    dataset_id: str
    candidate: str
    overrides: dict[str, Any] = Field(default_factory=dict, description="Training overrides of this job.")


class EvaluatePayload(_Payload):
    dataset_id: str
    candidate: str
    kind: str = Field(description="base | icl | customized")
    artifact_id: str | None = Field(None, description="customized: which artifact (default: the newest on the dataset).")
