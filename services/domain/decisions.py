"""Typed promotion decisions: which student (if any) replaces the teacher, and why, for every candidate."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CandidateVerdict(_Record):
    """How one candidate fared against the policy."""

    candidate: str
    qualified: bool
    reasons: list[str] = Field(description="Why it does not qualify (empty when it does), or why it was chosen/not.")
    metric_name: str | None = None
    score: float | None = None
    ci_low: float | None = Field(None, description="Lower bound of the score's CI: what the policy judges.")
    n: int = 0
    latency_p95_ms: float | None = None
    cost_per_1k_requests: float | None = None
    model_size_bytes: int | None = None
    artifact_id: str | None = None
    mode: Literal["full", "selective"] | None = Field(
        None, description="How it qualifies: full (answers every request) or selective (answers at or above a "
                          "confidence threshold; the teacher answers the rest).")
    cascade: dict[str, object] | None = Field(
        None, description="Selective option: threshold, coverage, agreement and its lower bound on the report records.")
    effective_cost_per_1k_requests: float | None = Field(
        None, description="Cost per 1k requests of the option: the student on every request plus the teacher on "
                          "the share it defers.")


class PromotionDecision(_Record):
    """The outcome of a job: a student to roll out (with how), or keep the teacher."""

    workload_id: str
    chosen: str | None = Field(description="Candidate to promote, or None: keep the teacher.")
    artifact_id: str | None = None
    reason: str = Field(description="One sentence a person can read.")
    rollout: Literal["direct", "canary", "shadow"]
    canary_percent: int | None = None
    requires_approval: bool
    teacher_cost_per_1k_requests: float | None = None
    teacher_cost_estimated: bool | None = Field(None, description="True when the logs carried no token usage: counted from the text.")
    chosen_cost_per_1k_requests: float | None = None
    mode: Literal["full", "selective"] | None = Field(None, description="How the chosen student serves.")
    cascade: dict[str, object] | None = Field(
        None, description="For a selective promotion: {threshold, coverage, agreement, agreement_ci_low, "
                          "n_calibration, n_report, confidence, ...}; the route takes the threshold.")
    skipped: dict[str, str] = Field(default_factory=dict, description="Candidates left out of the job, and why.")
    notes: list[str] = Field(default_factory=list, description="What a person should know (e.g. training examples "
                                                               "cut at max_seq_length).")
    verdicts: list[CandidateVerdict]
    policy: dict[str, object] = Field(description="The policy the decision was made under.")
