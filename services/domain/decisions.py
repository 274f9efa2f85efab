"""Typed promotion decisions: which student (if any) replaces the teacher, and why, for every candidate.

One record from the decide task to the deploy: the job store keeps it as JSON and parses it where it is
loaded, the deploy task's payload carries it, and approval moves its `status` on.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DecisionStatus(StrEnum):
    """Where a decision stands: what the job does with it next."""

    KEEP_TEACHER = "keep_teacher"  # no student chosen: nothing to deploy
    RECORDED = "recorded"  # a student chosen, deployed without approval
    AWAITING_APPROVAL = "awaiting_approval"  # a student chosen; the policy wants a person to approve it
    APPROVED = "approved"  # approved, then handed to the deployment manager

    @classmethod
    def initial(cls, *, chosen: str | None, requires_approval: bool) -> DecisionStatus:
        """The status a fresh decision starts in."""
        if not chosen:
            return cls.KEEP_TEACHER
        return cls.AWAITING_APPROVAL if requires_approval else cls.RECORDED


class SelectiveCascade(_Record):
    """A selective option, measured on the report records: the student answers at or above `threshold`,
    the teacher the rest."""

    threshold: float | None = Field(description="Confidence at or above which the student answers; None: none holds.")
    coverage: float = Field(description="Share of the report records the student answers.")
    served: int = Field(description="Report records the student answers.")
    agreement: float | None = Field(description="Agreement with the teacher on the served records.")
    agreement_ci_low: float | None = Field(description="One-sided lower bound of that agreement.")
    n_calibration: int = Field(description="Records the threshold was planned on.")
    n_report: int = Field(description="Records the option was measured on.")
    confidence: float = Field(description="Confidence of the lower bound.")
    target_agreement: float = Field(description="The policy's min_agreement the bound is held to.")
    method: str = Field(description="How the threshold was chosen.")
    calibration: dict[str, Any] | None = Field(None, description="The plan on the calibration records, if any.")
    curve: list[dict[str, float]] | None = Field(None, description="Agreement on the served share as the student "
                                                                   "answers more (most confident first), for plots.")


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
    cascade: SelectiveCascade | None = Field(None, description="The selective option, when it qualifies selectively.")
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
    status: DecisionStatus = Field(description="Where the decision stands; a fresh one starts in "
                                               "`DecisionStatus.initial` of its choice and policy.")
    approved_by: str | None = Field(None, description="Who approved it (status approved).")
    approved_at: datetime | None = Field(None, description="When it was approved (status approved).")
    teacher_cost_per_1k_requests: float | None = None
    teacher_cost_estimated: bool | None = Field(None, description="True when the logs carried no token usage: counted from the text.")
    chosen_cost_per_1k_requests: float | None = None
    mode: Literal["full", "selective"] | None = Field(None, description="How the chosen student serves.")
    cascade: SelectiveCascade | None = Field(
        None, description="For a selective promotion: the option the route takes its threshold and bounds from.")
    skipped: dict[str, str] = Field(default_factory=dict, description="Candidates left out of the job, and why.")
    notes: list[str] = Field(default_factory=list, description="What a person should know (e.g. training examples "
                                                               "cut at max_seq_length).")
    verdicts: list[CandidateVerdict]
    policy: dict[str, object] = Field(description="The policy the decision was made under.")

    @property
    def deploys(self) -> bool:
        """A student to hand to the deployment manager now (chosen, and approved where approval is required)."""
        return self.status in (DecisionStatus.RECORDED, DecisionStatus.APPROVED)

    def approved(self, actor: str | None, *, at: datetime) -> PromotionDecision:
        """This decision approved by `actor` (the caller checks it awaits approval)."""
        return self.model_copy(update={"status": DecisionStatus.APPROVED, "approved_by": actor, "approved_at": at})
