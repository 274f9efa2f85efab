"""Per-workload settings: type, label pattern, policy overrides, cron runs and the drift trigger."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, model_validator

from services.domain.settings._section import _Section
from services.domain.settings.limits import UsageLimits
from services.domain.settings.policy import PromotionOverrides
from services.domain.settings.teacher import TeacherCalls

DEFAULT_LABEL_PATTERN = r"\[\[\[\s*(.+?)\s*\]\]\]"


WorkloadType = Literal["auto", "classification", "chat", "tool_calling", "embedding"]


def parse_cron(expression: str) -> Any:
    """A five-field cron expression (minute hour day-of-month month day-of-week) as a Celery crontab."""
    from celery.schedules import crontab

    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"cron {expression!r} needs 5 fields (minute hour day-of-month month day-of-week), "
                         f"e.g. '0 2 * * *' for 02:00 daily")
    minute, hour, day_of_month, month, day_of_week = fields
    try:
        return crontab(minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month,
                       day_of_week=day_of_week)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"cron {expression!r} is not valid: {exc}") from None


class DriftSettings(_Section):
    enabled: bool = Field(False, description="Start a job when recent teacher answers drift from the last dataset.")
    check_cron: str = Field("*/30 * * * *", description="When to check (cron, UTC).")
    window: int = Field(500, ge=10, le=100_000, description="Newest records compared with the last dataset.")
    new_label_share: float = Field(
        0.05, gt=0, le=1, description="Trigger when at least this share of recent answers has a label the last "
                                      "dataset did not have.")
    distribution_shift: float = Field(
        0.2, gt=0, le=1, description="Trigger when the total-variation distance between the recent label "
                                     "distribution and the last dataset's train split reaches this.")

    @model_validator(mode="after")
    def _cron_parses(self) -> DriftSettings:
        parse_cron(self.check_cron)
        return self


class ScheduleSettings(_Section):
    cron: str | None = Field(None, description="Run a job on this cron (UTC), e.g. '0 2 * * *'; null: no schedule.")
    min_new_records: int = Field(
        100, ge=0, description="A scheduled run with fewer new records since the last job is skipped (an event).")
    client_id: str | None = Field(None, description="Only this client's logs (default: all).")
    overrides: dict[str, Any] = Field(default_factory=dict, description="Job overrides of scheduled runs.")
    drift: DriftSettings = Field(default_factory=DriftSettings)

    @model_validator(mode="after")
    def _cron_parses(self) -> ScheduleSettings:
        if self.cron is not None:
            parse_cron(self.cron)
        return self


class WorkloadSettings(_Section):
    type: WorkloadType = Field("auto", description="auto: detected from the records.")
    label_pattern: str = Field(
        DEFAULT_LABEL_PATTERN, description="Regex whose first group is the label in the teacher answer."
    )
    labels: list[str] | None = Field(None, description="The label set (else: taken from the data).")
    promotion: PromotionOverrides = Field(
        default_factory=PromotionOverrides, description="Overrides of the global `promotion` policy."
    )
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings, description="Cron runs and drift trigger.")
    limits: UsageLimits = Field(
        default_factory=UsageLimits, description="The gateway's limits on this workload, over every client key.")
    teacher_calls: TeacherCalls = Field(
        default_factory=TeacherCalls, description="This workload's teacher timeouts and attempts (null: `teacher`'s).")

    @model_validator(mode="after")
    def _pattern_compiles(self) -> WorkloadSettings:
        try:
            compiled = re.compile(self.label_pattern)
        except re.error as exc:
            raise ValueError(f"label_pattern {self.label_pattern!r} is not a valid regex: {exc}") from None
        if compiled.groups < 1:
            raise ValueError(f"label_pattern {self.label_pattern!r} needs one capture group (the label)")
        return self
