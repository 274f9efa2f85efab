"""Per-key and per-workload usage limits: the limiter's decisions (a clock the test moves), and its
counts in a real SQLite route store: they survive a restart and are shared by gateway replicas."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from services.deployment.gateway.limits import Limiter, LimitExceeded, LimitRules, limiter_for
from services.deployment.routes import RouteStore, limit_counts_table
from services.domain.settings import Settings, UsageLimits

NOON = datetime(2025, 3, 14, 12, 0, 0, tzinfo=UTC).timestamp()  # a minute's and a UTC day's middle: NOON + 0.5


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(NOON + 0.5)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RouteStore]:
    routes = RouteStore(f"sqlite:///{tmp_path / 'jobs.sqlite'}")
    yield routes
    routes.close()


def _limiter(store: Any, clock: Clock, *, keys: dict[str, dict[str, int]] | None = None,
             workloads: dict[str, dict[str, int]] | None = None) -> Limiter:
    rules = LimitRules(keys={k: UsageLimits(**v) for k, v in (keys or {}).items()},
                       workloads={w: UsageLimits(**v) for w, v in (workloads or {}).items()})
    return Limiter(rules, store, clock=clock)


def _admitted(limiter: Limiter, key: str | None, workload: str, tries: int) -> int:
    """How many of `tries` requests the limiter admits."""
    admitted = 0
    for _ in range(tries):
        try:
            limiter.check(key, workload)
        except LimitExceeded:
            continue
        admitted += 1
    return admitted


def test_no_limit_configured_means_no_limiter(store: RouteStore) -> None:
    settings = Settings.model_validate({"gateway": {"keys": [{"name": "desk", "token": "sk-1"}]},
                                        "workloads": {"news": {"type": "classification"}}})
    assert limiter_for(settings, store) is None  # the gateway then skips counting altogether
    limited = Settings.model_validate({"workloads": {"news": {"limits": {"tokens_per_day": 10}}}})
    limiter = limiter_for(limited, store)
    assert limiter is not None and limiter.rules.workloads == {"news": UsageLimits(tokens_per_day=10)}


def test_limits_come_from_the_keys_and_workloads_that_set_one() -> None:
    settings = Settings.model_validate({
        "gateway": {"auth_enabled": True, "keys": [{"name": "desk", "token": "sk-1", "limits": {"requests_per_minute": 5}},
                                                   {"name": "free", "token": "sk-2"}]},
        "workloads": {"news": {"limits": {"tokens_per_day": 1000}}, "chat": {}}})
    rules = LimitRules.from_settings(settings)
    assert rules.keys == {"desk": UsageLimits(requests_per_minute=5)}
    assert rules.workloads == {"news": UsageLimits(tokens_per_day=1000)}


def test_requests_per_minute_refuse_until_the_next_minute(store: RouteStore, clock: Clock) -> None:
    limiter = _limiter(store, clock, keys={"desk": {"requests_per_minute": 3}})
    assert _admitted(limiter, "desk", "news", 3) == 3
    clock.now = NOON + 45.2
    with pytest.raises(LimitExceeded) as refused:
        limiter.check("desk", "news")
    assert (refused.value.scope, refused.value.name, refused.value.limit) == ("key", "desk", "requests_per_minute")
    assert (refused.value.allowed, refused.value.retry_after_s) == (3, 15)  # 14.8 s to 12:01, rounded up
    assert "raise gateway.keys (name 'desk').limits.requests_per_minute" in str(refused.value)

    assert _admitted(limiter, "desk", "other-workload", 1) == 0  # a key's limit covers all its workloads
    assert _admitted(limiter, "another-key", "news", 2) == 2  # and no other key
    clock.now = NOON + 60
    assert _admitted(limiter, "desk", "news", 4) == 3


def test_a_workload_limit_counts_every_key_together(store: RouteStore, clock: Clock) -> None:
    limiter = _limiter(store, clock, workloads={"news": {"requests_per_minute": 4}})
    assert _admitted(limiter, "desk", "news", 2) + _admitted(limiter, "lab", "news", 3) == 4
    assert _admitted(limiter, None, "news", 1) == 0  # no key (auth off): the workload's limits still apply
    assert _admitted(limiter, "desk", "chat", 5) == 5
    with pytest.raises(LimitExceeded) as refused:
        limiter.check("lab", "news")
    assert (refused.value.scope, refused.value.name) == ("workload", "news")
    assert "raise workloads.news.limits.requests_per_minute" in str(refused.value)


def test_tokens_per_day_refuse_until_midnight_utc(store: RouteStore, clock: Clock) -> None:
    limiter = _limiter(store, clock, keys={"desk": {"tokens_per_day": 1000}})
    limiter.check("desk", "news")
    limiter.record("desk", "news", 600)
    limiter.check("desk", "news")  # under the limit: admitted, and this answer crosses it
    limiter.record("desk", "news", 600)
    with pytest.raises(LimitExceeded) as refused:
        limiter.check("desk", "news")
    assert (refused.value.limit, refused.value.allowed) == ("tokens_per_day", 1000)
    assert refused.value.retry_after_s == 12 * 3600  # from 12:00:00.5 to 00:00 UTC, rounded up
    limiter.record("lab", "news", 10_000)  # another key's tokens and unlimited workloads change nothing
    clock.now = NOON + 12 * 3600  # the next UTC day
    limiter.check("desk", "news")


def test_the_refusal_names_the_limit_that_ends_last(store: RouteStore, clock: Clock) -> None:
    limiter = _limiter(store, clock, keys={"desk": {"requests_per_minute": 1}},
                       workloads={"news": {"tokens_per_day": 10}})
    limiter.check("desk", "news")
    limiter.record("desk", "news", 50)
    with pytest.raises(LimitExceeded) as refused:
        limiter.check("desk", "news")
    assert (refused.value.scope, refused.value.limit) == ("workload", "tokens_per_day")


def test_a_refused_request_is_not_counted(store: RouteStore, clock: Clock) -> None:
    """A request the workload refuses does not use up the key's minute (nor the other way round)."""
    limiter = _limiter(store, clock, keys={"desk": {"requests_per_minute": 2}},
                       workloads={"news": {"requests_per_minute": 1}})
    assert _admitted(limiter, "desk", "news", 3) == 1
    assert _admitted(limiter, "desk", "chat", 3) == 1


def test_counts_survive_a_restart(tmp_path: Path, clock: Clock) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.sqlite'}"
    limits: dict[str, Any] = {"keys": {"desk": {"requests_per_minute": 3, "tokens_per_day": 500}}}
    first_store = RouteStore(url)
    first = _limiter(first_store, clock, **limits).start()
    assert _admitted(first, "desk", "news", 3) == 3
    first.record("desk", "news", 500)
    first.close()  # the last flush writes what the thread had not yet
    first_store.close()

    restarted_store = RouteStore(url)
    restarted = _limiter(restarted_store, clock, **limits).start()
    with pytest.raises(LimitExceeded) as refused:
        restarted.check("desk", "news")
    assert refused.value.limit == "tokens_per_day"  # the day's window ends last of the two exceeded
    clock.now = NOON + 60  # the minute is over, the day's tokens are not
    with pytest.raises(LimitExceeded):
        restarted.check("desk", "news")
    restarted.close()
    restarted_store.close()


def test_replicas_share_their_counts_at_each_flush(tmp_path: Path, clock: Clock) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.sqlite'}"
    stores = [RouteStore(url), RouteStore(url)]
    one, two = (_limiter(s, clock, workloads={"news": {"requests_per_minute": 5}}) for s in stores)
    assert _admitted(one, "desk", "news", 3) == 3
    # Before a flush the other replica does not know: this is the bounded over-admission.
    assert _admitted(two, "lab", "news", 1) == 1
    one.flush()
    two.flush()
    one.flush()
    assert _admitted(one, "desk", "news", 5) == 1
    one.flush()
    two.flush()
    assert _admitted(two, "lab", "news", 5) == 0
    for store in stores:
        store.close()


class FailingOnce:
    """The real route store behind a database that is down for the first flush."""

    def __init__(self, store: RouteStore) -> None:
        self.store, self.failures = store, 1

    def add_limit_counts(self, deltas: dict[tuple[str, str, str, int], int], *,
                         current: dict[str, int]) -> dict[tuple[str, str, str], int]:
        if self.failures:
            self.failures -= 1
            raise OperationalError("INSERT", {}, Exception("database is down"))
        return self.store.add_limit_counts(deltas, current=current)

    def drop_limit_counts(self, *, before: dict[str, int]) -> None:
        self.store.drop_limit_counts(before=before)


def test_counts_wait_in_memory_while_the_database_is_down(store: RouteStore, clock: Clock) -> None:
    limiter = _limiter(FailingOnce(store), clock, keys={"desk": {"requests_per_minute": 4}})
    assert _admitted(limiter, "desk", "news", 2) == 2
    limiter.flush()  # fails: still counted here, and kept for the next flush
    assert _admitted(limiter, "desk", "news", 1) == 1
    limiter.flush()
    assert store.add_limit_counts({}, current={"requests_per_minute": int(NOON)}) == {
        ("key", "desk", "requests_per_minute"): 3}
    assert _admitted(limiter, "desk", "news", 5) == 1


def test_ended_windows_are_dropped(store: RouteStore, clock: Clock) -> None:
    limiter = _limiter(store, clock, keys={"desk": {"requests_per_minute": 10, "tokens_per_day": 100}})
    limiter.check("desk", "news")
    limiter.record("desk", "news", 5)
    limiter.flush()
    clock.now = NOON + 61
    limiter.check("desk", "news")
    limiter.flush()
    with store.engine.connect() as connection:
        rows = connection.execute(select(limit_counts_table.c.kind, limit_counts_table.c.window_start,
                                         limit_counts_table.c.count)).all()
    assert sorted(tuple(r) for r in rows) == [("requests_per_minute", int(NOON) + 60, 1),
                                              ("tokens_per_day", int(NOON) - 12 * 3600, 5)]
