"""From logs to datasets: the train/val/eval split, redaction and dedup, in-context examples."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from services.domain.settings._section import _Section


class DataSplitSettings(_Section):
    eval_size: int = Field(200, ge=1, description="Records held out for evaluation: the least with eval_ratio, "
                                                  "exactly this many when set without it.")
    eval_ratio: float | None = Field(
        0.25, ge=0, lt=1, description="Hold out this share of the records for evaluation when it is more than "
                                      "eval_size (up to eval_max): more report records, tighter bounds (selective).")
    eval_max: int = Field(1000, ge=1, description="The most records eval_ratio holds out.")
    val_ratio: float = Field(0.1, ge=0, lt=1, description="Share of the rest used for validation.")
    min_total_records: int = Field(50, ge=2, description="Fewer records than this: job fails early.")
    limit: int | None = Field(10_000, ge=1, description="Newest records exported per job.")
    seed: int = Field(42, ge=0)
    parse_function_arguments: bool = True

    def eval_count(self, total: int) -> int:
        """Eval records for `total` usable ones: eval_size, or eval_ratio of them when that is more (<= eval_max).
        A config that sets eval_size and not eval_ratio means exactly eval_size."""
        if not self.eval_ratio or ("eval_size" in self.model_fields_set and "eval_ratio" not in self.model_fields_set):
            return self.eval_size
        return max(self.eval_size, min(self.eval_max, round(self.eval_ratio * total)))

    @model_validator(mode="after")
    def _eval_fits(self) -> DataSplitSettings:
        if self.limit is not None and self.eval_size >= self.limit:
            raise ValueError(
                f"data_split.eval_size ({self.eval_size}) must be smaller than data_split.limit ({self.limit})"
            )
        return self


class DatasetSettings(_Section):
    redact_pii: bool = Field(True, description="Redact emails, phones, cards, IBANs, SSNs before datasets.")
    redaction_patterns: dict[str, str] = Field(
        default_factory=dict, description="Extra PII kinds: name -> regex; matches become [REDACTED:NAME]."
    )
    dedup_digits: Literal["keep", "mask", "drop"] = Field(
        "keep", description="Whether numbers distinguish otherwise equal user turns when deduplicating."
    )
    static_prompt_min_share: float = Field(
        0.8, gt=0, le=1, description="A system prompt carried by at least this share of records is static "
                                     "(recorded in the manifest; pruned students train without it).")

    @model_validator(mode="after")
    def _patterns_compile(self) -> DatasetSettings:
        for name, pattern in self.redaction_patterns.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"datasets.redaction_patterns.{name} = {pattern!r} is not a valid regex: {exc}") from None
        return self


class IclSettings(_Section):
    max_context_length: int = Field(8192, ge=256)
    reserved_tokens: int = Field(2048, ge=0)
    max_examples: int = Field(3, ge=0, le=64)
    min_examples: int = Field(1, ge=0, le=64)
    example_selection: Literal["uniform_distribution", "semantic_similarity"] = "uniform_distribution"
    embedding_model: str = Field("minilm-l6", description="Registry model for semantic selection.")
    pool_cap: int = Field(2000, ge=1, le=100_000, description="Train examples embedded for semantic selection.")

    @model_validator(mode="after")
    def _bounds(self) -> IclSettings:
        if self.min_examples > self.max_examples:
            raise ValueError(
                f"icl.min_examples ({self.min_examples}) exceeds icl.max_examples ({self.max_examples})"
            )
        if self.reserved_tokens >= self.max_context_length:
            raise ValueError("icl.reserved_tokens must be smaller than icl.max_context_length")
        return self
