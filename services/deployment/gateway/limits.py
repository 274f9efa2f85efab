"""Per-key and per-workload usage limits (config `gateway.keys[].limits`, `workloads.W.limits`):
requests per UTC minute and tokens per UTC day, in fixed windows.

The request path touches only memory: `check` admits (and counts) a request or raises
`LimitExceeded`; `record` adds an answer's tokens. A thread adds each process's new counts to the
route store's `limit_counts` table every `flush_interval_s` and reads back the totals of all
processes, and `start` reads them once before the first request, so counts survive a restart and
are shared by replicas. Between flushes a process does not see the others' new counts: with N
processes a window can admit up to what the other N-1 admitted in about one flush interval beyond
its limit (docs/gateway.md). If the database is unreachable, counting goes on in memory (limits
stay per process) and the counts are written once it is back: serving never fails on counting.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from sqlalchemy.exc import SQLAlchemyError

from services.deployment.gateway.periodic import PeriodicFlush
from services.domain.errors import FlywheelError
from services.domain.settings import UsageLimits

if TYPE_CHECKING:
    from services.domain.settings import Settings

log = logging.getLogger(__name__)

Scope = Literal["key", "workload"]
LimitKind = Literal["requests_per_minute", "tokens_per_day"]
WINDOW_S: dict[LimitKind, int] = {"requests_per_minute": 60, "tokens_per_day": 86_400}
CountKey = tuple[str, str, str]  # (scope, name, kind)


class LimitExceeded(FlywheelError):
    """A request over a configured limit; `retry_after_s` is when that limit's window ends."""

    def __init__(self, *, scope: Scope, name: str, limit: LimitKind, allowed: int, retry_after_s: int) -> None:
        self.scope, self.name, self.limit, self.allowed, self.retry_after_s = scope, name, limit, allowed, retry_after_s
        unit = "requests per minute" if limit == "requests_per_minute" else "tokens per day (UTC)"
        if scope == "key":
            who, setting = f"API key {name!r}", f"gateway.keys (name {name!r}).limits.{limit}"
        else:
            who, setting = f"workload {name!r} (all keys together)", f"workloads.{name}.limits.{limit}"
        super().__init__(f"{who} reached its limit of {allowed} {unit}; retry in {retry_after_s} s, "
                         f"or raise {setting} in the gateway's config")


class LimitCountStore(Protocol):
    """Where the counts are shared (RouteStore: the `limit_counts` table)."""

    def add_limit_counts(self, deltas: dict[tuple[str, str, str, int], int], *,
                         current: dict[str, int]) -> dict[CountKey, int]: ...

    def drop_limit_counts(self, *, before: dict[str, int]) -> None: ...


@dataclass(frozen=True)
class LimitRules:
    """The configured limits: key name -> limits, workload id -> limits (only entries with a limit)."""

    keys: dict[str, UsageLimits] = field(default_factory=dict)
    workloads: dict[str, UsageLimits] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> LimitRules:
        return cls(keys={k.name: k.limits for k in settings.gateway.keys if k.limits.any},
                   workloads={w: s.limits for w, s in settings.workloads.items() if s.limits.any})

    @property
    def any(self) -> bool:
        return bool(self.keys or self.workloads)


def window_start(now: float, kind: LimitKind) -> int:
    """The start (UTC epoch seconds) of the fixed window of `kind` that holds `now`."""
    size = WINDOW_S[kind]
    return int(now // size) * size


class Limiter:
    def __init__(self, rules: LimitRules, store: LimitCountStore, *, flush_interval_s: float = 1.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.rules, self.store, self.flush_interval_s, self.clock = rules, store, flush_interval_s, clock
        self._counts: dict[CountKey, list[int]] = {}  # counter -> [window start, count known to this process]
        self._pending: dict[tuple[str, str, str, int], int] = {}  # (counter, window start) -> not yet written
        self._pruned_before = 0
        self._lock = threading.Lock()
        self._flusher = PeriodicFlush(self.flush, interval_s=flush_interval_s, name="gateway-limits")

    def check(self, key_name: str | None, workload: str) -> None:
        """Admit one request of `key_name` (None: no key) to `workload`, counting it; LimitExceeded otherwise
        (naming the limit whose window ends last, so one retry after it can pass)."""
        key_limits = self.rules.keys.get(key_name) if key_name is not None else None
        workload_limits = self.rules.workloads.get(workload)
        if key_limits is None and workload_limits is None:
            return
        now = self.clock()
        exceeded: list[LimitExceeded] = []
        admitted: list[CountKey] = []
        with self._lock:
            scoped: tuple[tuple[Scope, str | None, UsageLimits | None], ...] = (
                ("key", key_name, key_limits), ("workload", workload, workload_limits))
            for scope, name, limits in scoped:
                if limits is None or name is None:
                    continue
                kinds: tuple[tuple[LimitKind, int | None], ...] = (
                    ("requests_per_minute", limits.requests_per_minute), ("tokens_per_day", limits.tokens_per_day))
                for kind, allowed in kinds:
                    if allowed is None:
                        continue
                    start = window_start(now, kind)
                    if self._count((scope, name, kind), start) >= allowed:
                        retry = max(1, math.ceil(start + WINDOW_S[kind] - now))
                        exceeded.append(LimitExceeded(scope=scope, name=name, limit=kind, allowed=allowed,
                                                      retry_after_s=retry))
                    elif kind == "requests_per_minute":
                        admitted.append((scope, name, kind))
            if exceeded:
                raise max(exceeded, key=lambda e: e.retry_after_s)
            for counter in admitted:
                self._add(counter, window_start(now, "requests_per_minute"), 1)

    def record(self, key_name: str | None, workload: str, tokens: int) -> None:
        """Count an answer's tokens (its usage) against the key's and the workload's tokens per day."""
        if tokens <= 0:
            return
        scoped = (("key", key_name, self.rules.keys.get(key_name) if key_name is not None else None),
                  ("workload", workload, self.rules.workloads.get(workload)))
        counters = [(scope, name, "tokens_per_day") for scope, name, limits in scoped
                    if name is not None and limits is not None and limits.tokens_per_day is not None]
        if not counters:
            return
        start = window_start(self.clock(), "tokens_per_day")
        with self._lock:
            for counter in counters:
                self._add(counter, start, tokens)

    def _count(self, counter: CountKey, start: int) -> int:
        entry = self._counts.get(counter)
        return entry[1] if entry is not None and entry[0] == start else 0

    def _add(self, counter: CountKey, start: int, amount: int) -> None:
        entry = self._counts.get(counter)
        if entry is None or entry[0] != start:  # a new window begins at zero
            entry = self._counts[counter] = [start, 0]
        entry[1] += amount
        pending = (*counter, start)
        self._pending[pending] = self._pending.get(pending, 0) + amount

    def flush(self) -> None:
        """Add this process's new counts to the store and take the totals of every process from it."""
        now = self.clock()
        current: dict[str, int] = {kind: window_start(now, kind) for kind in WINDOW_S}
        with self._lock:
            deltas, self._pending = self._pending, {}
        try:
            totals = self.store.add_limit_counts(deltas, current=current)
            if current["requests_per_minute"] > self._pruned_before:  # once a minute is enough
                self.store.drop_limit_counts(before=current)
                self._pruned_before = current["requests_per_minute"]
        except SQLAlchemyError as exc:
            log.warning("cannot share usage-limit counts (kept in memory for the next flush): %s", exc)
            with self._lock:
                for pending, amount in deltas.items():
                    self._pending[pending] = self._pending.get(pending, 0) + amount
            return
        with self._lock:
            for counter in set(totals) | set(self._counts):
                start = current.get(counter[2])
                if start is None:
                    continue  # a kind this release does not know
                entry = self._counts.get(counter)
                if entry is not None and entry[0] > start:
                    continue  # a request during this flush already opened the next window
                # Counts since the swap above are not in the store yet: they stay on top of its total.
                self._counts[counter] = [start, totals.get(counter, 0) + self._pending.get((*counter, start), 0)]

    def start(self) -> Limiter:
        """Read the counts of the current windows (they survive a restart), then flush on a thread."""
        self.flush()
        self._flusher.start()
        return self

    def close(self) -> None:
        self._flusher.close()


def limiter_for(settings: Settings, store: LimitCountStore) -> Limiter | None:
    """The gateway's limiter, or None when no limit is configured (then requests are not counted at all)."""
    rules = LimitRules.from_settings(settings)
    if not rules.any:
        return None
    if rules.keys and not settings.gateway.auth_enabled:
        log.warning("gateway.keys set limits but gateway.auth_enabled is false: requests carry no key, so only "
                    "the workloads' limits apply")
    return Limiter(rules, store, flush_interval_s=settings.gateway.limits_flush_interval_s)
