"""When a student may replace the teacher (promotion policy), and the prices that weigh the choice."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, TypeAlias

from pydantic import Field

from services.domain.settings._section import _Overrides, _partial, _Section

Ranking = Literal["cost", "latency", "score"]
RANKINGS: tuple[Ranking, ...] = ("cost", "latency", "score")


class PromotionPolicy(_Section):
    """When a student may replace the teacher, and how the deployment manager proceeds."""

    min_score: float = Field(
        0.9, ge=0, le=1, description="Minimum f1_vs_teacher / score_vs_teacher, judged on the LOWER CI bound."
    )
    min_eval_size: int = Field(100, ge=1, description="Fewer eval records than this: no verdict can be trusted.")
    class_f1_floor: float | None = Field(
        None, ge=0, le=1, description="Every class with enough support must reach this F1 (classification)."
    )
    class_floor_min_support: int = Field(10, ge=1, description="Support a class needs for its floor to apply.")
    max_latency_p95_ms: float | None = Field(None, gt=0, description="Slower students (p95 per request) do not qualify.")
    selective: bool = Field(
        True, description="A classification student that misses min_score may still qualify to answer the requests "
                          "it is confident about (the teacher answers the rest): docs/selective.md.")
    min_coverage: float = Field(0.5, gt=0, le=1, description="Selective: least share of requests the student must serve.")
    min_agreement: float = Field(
        0.9, gt=0, le=1, description="Selective: agreement with the teacher on the served share, judged on its "
                                     "one-sided lower bound at evaluation.confidence, on records the threshold "
                                     "was not chosen on.")
    prefer: list[Ranking] = Field(
        default_factory=lambda: list(RANKINGS),
        description="How to rank qualifying students: lower cost, then lower latency, then higher score.",
    )
    rollout: Literal["direct", "canary", "shadow"] = Field(
        "canary", description="direct: full traffic at once; canary: canary_percent first; shadow: mirror only."
    )
    canary_percent: int = Field(10, ge=1, le=100)
    require_approval: bool = Field(False, description="A person approves (POST /api/jobs/{id}/approve) before deploy.")
    live_min_requests: int = Field(
        50, ge=1, description="Compared requests a phase needs before the route controller moves it on or back.")
    live_agreement_floor: float = Field(
        0.9, ge=0, le=1, description="Live agreement with the teacher needed to move shadow -> canary -> full.")
    rollback_agreement_floor: float = Field(
        0.8, ge=0, le=1, description="Below this live agreement the route controller rolls back.")
    live_min_coverage: float | None = Field(
        None, ge=0, le=1, description="A selective route serving less than this share of the requests it is asked "
                                      "rolls back (null: half of min_coverage).")
    monitor_share: float = Field(
        0.1, ge=0, le=1, description="Share of student-served requests the teacher also answers (to watch agreement).")


if TYPE_CHECKING:  # fields made at run time; to the type checker, a partial section of any of them
    PromotionOverrides: TypeAlias = _Overrides
else:
    PromotionOverrides = _partial(PromotionPolicy, "PromotionOverrides")


class PricingSettings(_Section):
    """Prices that turn measurements into cost per 1k requests (any currency, used consistently)."""

    teacher_per_1k_input_tokens: float = Field(0.0006, ge=0, description="Teacher price per 1k prompt tokens.")
    teacher_per_1k_output_tokens: float = Field(0.0006, ge=0, description="Teacher price per 1k completion tokens.")
    student_per_hour: float = Field(0.5, ge=0, description="Hourly price of the machine serving one student.")
    student_per_hour_by_candidate: dict[str, float] = Field(
        default_factory=dict, description="Per-candidate hourly price (e.g. GPU students), overriding the default."
    )
