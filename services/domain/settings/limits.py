"""Usage limits the gateway enforces: per client key (`gateway.keys[].limits`) and per workload
(`workloads.W.limits`). Null means no limit; a section with no limit costs the gateway nothing."""

from __future__ import annotations

from pydantic import Field

from services.domain.settings._section import _Section


class UsageLimits(_Section):
    requests_per_minute: int | None = Field(
        None, ge=1, description="Requests admitted per UTC clock minute (a fixed window); more are answered "
                                "429 with Retry-After until the next minute. Null: no limit.")
    tokens_per_day: int | None = Field(
        None, ge=1, description="Tokens (the answers' usage: prompt + completion) per UTC day; once reached, "
                                "requests are answered 429 with Retry-After until 00:00 UTC. The request that "
                                "crosses the limit is still answered. Null: no limit.")

    @property
    def any(self) -> bool:
        """Whether any limit is set (else the gateway skips counting altogether)."""
        return self.requests_per_minute is not None or self.tokens_per_day is not None
