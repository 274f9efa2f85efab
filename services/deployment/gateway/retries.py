"""How the gateway calls the teacher for one request: the deadline, the connect timeout and when to
try again (`CallPolicy`, resolved once per workload from `teacher` and `workloads.W.teacher_calls`).

Retried: 408, 429, 500, 502, 503, 504 and failures to connect or to read a whole answer, never a
stream after its first byte (nothing the client has seen is sent twice). The wait before attempt n+1
is a random time between 0 and `backoff_s * 2**(n-1)` (capped at `backoff_max_s`): full jitter, so
gateways that all saw the same failure do not come back at the same instant. A `Retry-After` of
429/503 is honoured when it is at most `retry_after_max_s`; every wait must end before the deadline,
else the last answer stands.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from services.domain.settings import Settings

RETRIED_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class CallPolicy:
    timeout_s: float
    connect_timeout_s: float
    max_attempts: int
    backoff_s: float
    backoff_max_s: float
    retry_after_max_s: float

    @classmethod
    def of(cls, settings: Settings, workload: str) -> CallPolicy:
        """The teacher's call settings with the workload's own values over them."""
        teacher, own = settings.teacher, settings.workload(workload).teacher_calls
        return cls(timeout_s=own.timeout_s or teacher.timeout_s,
                   connect_timeout_s=own.connect_timeout_s or teacher.connect_timeout_s,
                   max_attempts=own.max_attempts or teacher.max_attempts, backoff_s=teacher.retry_backoff_s,
                   backoff_max_s=teacher.retry_backoff_max_s, retry_after_max_s=teacher.retry_after_max_s)

    def deadline(self) -> float:
        """When a request that starts now must have its answer (time.monotonic())."""
        return time.monotonic() + self.timeout_s

    def wait(self, attempt: int, deadline: float, rng: random.Random, retry_after: str | None = None) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None when there is none: attempts used up, a
        Retry-After longer than allowed, or no time left before `deadline` for the wait and a call."""
        if attempt >= self.max_attempts:
            return None
        asked = parse_retry_after(retry_after)
        if asked is not None:
            if asked > self.retry_after_max_s:
                return None
            wait = asked
        else:
            wait = rng.uniform(0, min(self.backoff_max_s, self.backoff_s * 2 ** (attempt - 1)))
        return wait if time.monotonic() + wait < deadline else None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), or None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
