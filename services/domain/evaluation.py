"""Typed evaluation records: what one evaluation of one candidate against the teacher found.

Every part of the platform speaks these: the evaluator writes them as artifacts, the orchestrator's
promotion policy reads them, the API and CLI print `to_public()`. The headline number is named
for what it is: `f1_vs_teacher` (classification: macro F1 with the teacher's answers as the
reference) or `score_vs_teacher` (every other workload), each with its confidence interval.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

EvalWorkloadType = Literal["classification", "chat", "tool_calling", "embedding"]
Decoding = Literal["constrained", "generate"]

CLASSIFICATION_METRIC = "f1_vs_teacher"
DEFAULT_METRIC = "score_vs_teacher"


def metric_name_for(workload_type: str) -> str:
    """The headline metric's public name for a workload type."""
    return CLASSIFICATION_METRIC if workload_type == "classification" else DEFAULT_METRIC


def _now() -> float:
    return datetime.now(UTC).timestamp()


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EvalKind(StrEnum):
    """Which variant of a candidate was evaluated."""

    BASE = "base"
    ICL = "icl"
    CUSTOMIZED = "customized"


class LatencyStats(_Record):
    """Per-request latency and throughput of a candidate over an evaluation."""

    n: int = Field(ge=0, description="Requests timed.")
    p50_ms: float = Field(ge=0, description="Median latency per request, milliseconds.")
    p95_ms: float = Field(ge=0, description="95th-percentile latency per request, milliseconds.")
    mean_ms: float = Field(ge=0, description="Mean latency per request, milliseconds.")
    throughput_per_s: float = Field(ge=0, description="Requests completed per second of wall time.")


class EvalResult(_Record):
    """One evaluation of one candidate on one eval dataset, scored against the teacher's answers."""

    candidate: str = Field(min_length=1, description="Candidate name, e.g. 'smollm2-135m' or 'smollm2-135m:lora-3f2a'.")
    eval_kind: EvalKind
    dataset_id: str = Field(min_length=1, description="The dataset the eval split came from.")
    eval_sha256: str = Field(min_length=1, description="Content hash of the eval split, so results are comparable.")
    workload_type: EvalWorkloadType
    applicable: bool = Field(
        default=True, description="False when this kind of evaluation does not apply to the candidate."
    )
    reason: str | None = Field(default=None, description="Why the evaluation is not applicable, or what failed.")
    metric_name: str = Field(
        default="",
        description="'f1_vs_teacher' for classification, else 'score_vs_teacher' (filled in from workload_type).",
    )
    score: float | None = Field(default=None, ge=0, le=1, description="The headline metric, 0..1.")
    ci: tuple[float, float] | None = Field(
        default=None, description="Bootstrap confidence interval [lo, hi] of the score."
    )
    n: int = Field(default=0, ge=0, description="Eval records scored.")
    unparseable: int = Field(
        default=0, ge=0, description="Candidate outputs that could not be parsed (counted as wrong)."
    )
    decoding: Decoding | None = Field(
        default=None, description="How a causal LM produced labels: constrained scoring or generation."
    )
    metrics: dict[str, Any] = Field(
        default_factory=dict, description="Every secondary metric (per-class, confusion, ...)."
    )
    latency: LatencyStats | None = None
    model_size_bytes: int | None = Field(
        default=None, ge=0, description="Bytes on disk of the candidate (weights or adapter)."
    )
    artifact_id: str | None = Field(default=None, description="Artifact holding this result, once saved.")
    created_at: float = Field(default_factory=_now, description="Unix seconds (UTC).")

    @model_validator(mode="before")
    @classmethod
    def _fill_metric_name(cls, data: Any) -> Any:
        # The name follows from the workload type; callers need not repeat it, a stored record keeps it.
        if isinstance(data, dict) and not data.get("metric_name") and isinstance(data.get("workload_type"), str):
            data = {**data, "metric_name": metric_name_for(data["workload_type"])}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> EvalResult:
        expected = metric_name_for(self.workload_type)
        if self.metric_name != expected:
            raise ValueError(
                f"metric_name {self.metric_name!r} does not fit workload_type {self.workload_type!r} (expected {expected!r})"
            )
        if not self.applicable:
            if not self.reason:
                raise ValueError("a not-applicable result needs a reason")
            if self.score is not None or self.ci is not None:
                raise ValueError("a not-applicable result has no score or ci")
        if self.ci is not None:
            lo, hi = self.ci
            if not lo <= hi:
                raise ValueError(f"ci lower bound {lo} exceeds upper bound {hi}")
            if self.score is None:
                raise ValueError("a ci needs a score")
        if self.unparseable > self.n:
            raise ValueError(f"unparseable ({self.unparseable}) exceeds n ({self.n})")
        return self

    @classmethod
    def not_applicable(
        cls,
        candidate: str,
        kind: EvalKind,
        dataset_id: str,
        eval_sha256: str,
        workload_type: EvalWorkloadType,
        reason: str,
    ) -> EvalResult:
        """A result saying this evaluation does not apply to the candidate, and why."""
        return cls(
            candidate=candidate,
            eval_kind=kind,
            dataset_id=dataset_id,
            eval_sha256=eval_sha256,
            workload_type=workload_type,
            applicable=False,
            reason=reason,
        )

    def to_public(self) -> dict[str, Any]:
        """JSON-ready dict with the headline under its public name (`f1_vs_teacher[_ci]` or `score_vs_teacher[_ci]`)."""
        body = self.model_dump(mode="json", exclude={"score", "ci"})
        body[self.metric_name] = self.score
        body[f"{self.metric_name}_ci"] = list(self.ci) if self.ci is not None else None
        return body

    def to_public_json(self) -> str:
        """`to_public()` as a JSON string (what the CLI's --json prints)."""
        return json.dumps(self.to_public(), sort_keys=True)
