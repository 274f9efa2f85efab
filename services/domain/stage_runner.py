"""One wrapper every service task runs its work through, so all stages behave alike:

- the stage row goes queued -> running -> completed | failed | cancelled, with progress and result;
- a cancelled job is seen before the work starts and between steps (`StageContext.check_cancelled`);
- transient errors (a store or upstream service that may come back) retry with exponential backoff;
- any other error marks THIS stage failed and returns a failure envelope instead of raising, so one
  candidate's failure never stops the other candidates or the decision;
- a stage whose upstream failed or was cancelled is not run and says why.

Every task returns an envelope: {"ok": true, ...result} or {"ok": false, "error": "...", ...}.
Reporting is best effort: a job store hiccup is logged, never fails the work.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from services.domain.errors import ExternalServiceError, FlywheelError, StoreError, TrainingCancelled
from services.domain.jobs import JobRef, JobReporter, JobStatus

log = logging.getLogger(__name__)

MAX_RETRIES = 3
BACKOFF_S = 2.0


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, ExternalServiceError):
        return exc.retryable
    return isinstance(exc, StoreError | ConnectionError | TimeoutError)


@dataclass
class StageContext:
    """What the work function gets: progress reporting and the cancel flag (polled at most once a second)."""

    job: JobRef | None
    reporter: JobReporter | None
    cancel_poll_s: float = 1.0
    _last_poll: float = field(default=0.0, init=False)
    _cancelled: bool = field(default=False, init=False)

    def cancelled(self) -> bool:
        if self.job is None or self.reporter is None or self._cancelled:
            return self._cancelled
        now = time.monotonic()
        if now - self._last_poll >= self.cancel_poll_s:
            self._last_poll = now
            try:
                self._cancelled = self.reporter.cancel_requested(self.job.job_id)
            except Exception as exc:  # noqa: BLE001 - a store hiccup must not stop the work
                log.warning("cannot read the cancel flag of job %s: %s", self.job.job_id, exc)
        return self._cancelled

    def check_cancelled(self) -> None:
        if self.cancelled():
            raise TrainingCancelled(f"job {self.job.job_id if self.job else '?'} was cancelled")

    def progress(self, fraction: float | None, detail: dict[str, Any] | None = None) -> None:
        self.report(progress=fraction, detail=detail)

    def report(self, **fields: Any) -> None:
        if self.job is None or self.reporter is None:
            return
        try:
            self.reporter.set_stage(self.job.job_id, self.job.stage.value, candidate=self.job.candidate, **fields)
        except Exception as exc:  # noqa: BLE001 - reporting is best effort
            log.warning("cannot report on job %s stage %s: %s", self.job.job_id, self.job.stage.value, exc)


def failure(error: str, **extra: Any) -> dict[str, Any]:
    return {"ok": False, "error": error, **extra}


def run_stage(
    task: Any,
    reporter: JobReporter | None,
    job: JobRef | None,
    work: Callable[[StageContext], dict[str, Any]],
    *,
    upstream: dict[str, Any] | None = None,
    max_retries: int = MAX_RETRIES,
) -> dict[str, Any]:
    """Run `work` as the stage `job` names on behalf of the Celery `task` (bound); return its envelope."""
    ctx = StageContext(job, reporter)
    if upstream is not None and not upstream.get("ok", True):
        why = upstream.get("error", "upstream stage failed")
        ctx.report(status=JobStatus.CANCELLED, error=f"not run: {why}")
        return failure(why, skipped=True, cancelled=bool(upstream.get("cancelled")))
    if ctx.cancelled():
        ctx.report(status=JobStatus.CANCELLED, error="job cancelled before this stage started")
        return failure("job cancelled", cancelled=True)
    retries = int(getattr(getattr(task, "request", None), "retries", 0) or 0)
    if job is not None and reporter is not None:
        try:
            reporter.set_job(job.job_id, status=JobStatus.RUNNING)
        except Exception as exc:  # noqa: BLE001
            log.warning("cannot mark job %s running: %s", job.job_id, exc)
    ctx.report(status=JobStatus.RUNNING, detail={"attempt": retries + 1})
    try:
        result = work(ctx)
    except TrainingCancelled as exc:
        ctx.report(status=JobStatus.CANCELLED, error=str(exc))
        return failure(str(exc), cancelled=True)
    except Exception as exc:  # noqa: BLE001 - every error becomes this stage's failure, with its reason
        if is_transient(exc) and retries < max_retries and task is not None:
            countdown = BACKOFF_S * 2**retries
            ctx.report(detail={"attempt": retries + 1, "retrying_in_s": countdown, "last_error": str(exc)})
            log.warning("transient error, retry %d/%d in %.0f s: %s", retries + 1, max_retries, countdown, exc)
            raise task.retry(exc=exc, countdown=countdown, max_retries=max_retries) from exc
        if not isinstance(exc, FlywheelError):
            log.exception("stage failed with an unexpected error")
        message = f"{type(exc).__name__}: {exc}"
        ctx.report(status=JobStatus.FAILED, error=message)
        return failure(message, reason=getattr(exc, "reason", type(exc).__name__))
    ctx.report(status=JobStatus.COMPLETED, progress=1.0, result=result)
    return {"ok": True, **result}
