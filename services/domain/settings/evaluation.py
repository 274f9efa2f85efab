"""How students are scored: bootstrap CIs, budgets, decoding, an optional LLM judge."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator

from services.domain.settings._section import _Section


class JudgeSettings(_Section):
    enabled: bool = False
    base_url: str | None = Field(None, description="OpenAI-compatible judge endpoint.")
    model: str | None = None
    api_key: SecretStr | None = None
    timeout_s: float = Field(60.0, gt=0, le=600)

    @model_validator(mode="after")
    def _endpoint(self) -> JudgeSettings:
        if self.enabled and not (self.base_url and self.model):
            raise ValueError("evaluation.judge needs base_url and model when enabled")
        return self


class EvaluationSettings(_Section):
    bootstrap_samples: int = Field(1000, ge=0, le=100_000, description="0 disables CIs.")
    confidence: float = Field(0.95, gt=0.5, lt=1)
    max_eval_records: int | None = Field(None, ge=1, description="Score on a stratified random sample of this many.")
    baseline_max_records: int | None = Field(
        50, ge=1, description="Base and ICL evaluations (baselines, never promoted) on a stratified sample of this "
                              "many records (null: the whole eval split).")
    stage_budget_s: float | None = Field(
        1800, gt=0, description="An evaluation stops answering after this many seconds and is scored on what it "
                                "answered, marked `stopped_by_budget` (a customized one then rarely has the records "
                                "the policy needs).")
    futility_confidence: float | None = Field(
        0.99, gt=0.5, lt=1, description="A customized classification or tool-calling evaluation stops early, "
                                        "marked `stopped_early`, once the student provably cannot qualify: its "
                                        "score's upper bound is under promotion.min_score and (selective) its "
                                        "agreement's upper bound under min_coverage x min_agreement, at this "
                                        "confidence (null: always answer every record).")
    futility_every: int = Field(50, ge=10, description="Records answered between two futility checks.")
    decoding: Literal["constrained", "generate"] = Field(
        "constrained", description="Classification with causal LMs: score each label (constrained) or generate."
    )
    seed: int = Field(0, ge=0, description="Seed of the bootstrap resamples.")
    judge: JudgeSettings = Field(default_factory=JudgeSettings)
