"""When the gateway tries the teacher again and how long it waits (retries.py), without HTTP."""

from __future__ import annotations

import random
import time
from email.utils import formatdate

import pytest

from services.deployment.gateway.retries import CallPolicy, parse_retry_after
from services.domain.settings import Settings

POLICY = CallPolicy(timeout_s=10, connect_timeout_s=1, max_attempts=3, backoff_s=0.5, backoff_max_s=1.5,
                    retry_after_max_s=5)


def test_backoff_is_jittered_doubled_and_capped() -> None:
    rng, deadline = random.Random(0), time.monotonic() + 100
    firsts = [POLICY.wait(1, deadline, rng) for _ in range(200)]
    seconds = [POLICY.wait(2, deadline, rng) for _ in range(200)]
    assert all(w is not None and 0 <= w <= 0.5 for w in firsts), "attempt 2 waits up to backoff_s"
    assert all(w is not None and 0 <= w <= 1.0 for w in seconds), "attempt 3 waits up to twice that"
    assert max(w for w in seconds if w is not None) > 0.5 > min(w for w in firsts if w is not None), "full jitter"
    many = CallPolicy(timeout_s=10, connect_timeout_s=1, max_attempts=10, backoff_s=0.5, backoff_max_s=1.5,
                      retry_after_max_s=5)
    assert all((w := many.wait(8, deadline, rng)) is not None and w <= 1.5 for _ in range(100)), "backoff_max_s caps it"


def test_no_wait_after_the_last_attempt_or_past_the_deadline() -> None:
    rng = random.Random(1)
    assert POLICY.wait(3, time.monotonic() + 100, rng) is None, "max_attempts calls in all"
    assert POLICY.wait(1, time.monotonic() + 100, rng, "2") == 2.0, "Retry-After is honoured"
    assert POLICY.wait(1, time.monotonic() + 100, rng, "6") is None, "longer than retry_after_max_s: no retry"
    assert POLICY.wait(1, time.monotonic() + 1, rng, "2") is None, "a wait that ends past the deadline: no retry"


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert parse_retry_after("3") == 3.0 and parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    in_ten = parse_retry_after(formatdate(time.time() + 10, usegmt=True))
    assert in_ten is not None and 8 <= in_ten <= 10
    assert parse_retry_after(formatdate(time.time() - 60, usegmt=True)) == 0.0


def test_a_workloads_own_timeout_and_attempts_override_the_teachers() -> None:
    settings = Settings.model_validate({
        "teacher": {"timeout_s": 30, "max_attempts": 4, "retry_backoff_s": 0.1},
        "workloads": {"fast": {"teacher_calls": {"timeout_s": 2, "max_attempts": 1}}}})
    fast, other = CallPolicy.of(settings, "fast"), CallPolicy.of(settings, "other")
    assert (fast.timeout_s, fast.max_attempts, fast.backoff_s) == (2, 1, 0.1)
    assert (other.timeout_s, other.max_attempts, other.connect_timeout_s) == (30, 4, 5.0)


@pytest.mark.parametrize("field", ["timeout_s", "max_attempts"])
def test_impossible_call_settings_are_refused(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Settings.model_validate({"teacher": {field: 0}})


def test_the_teachers_proxy_comes_from_the_environment_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.deployment.gateway.upstream import env_proxy

    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert env_proxy("https://teacher.example/v1") is None
    monkeypatch.setenv("https_proxy", "http://proxy.corp:3128")
    assert env_proxy("https://teacher.example/v1") == "http://proxy.corp:3128"
    assert env_proxy("http://teacher.example/v1") is None, "only the scheme's own proxy"
    monkeypatch.setenv("no_proxy", "teacher.example")
    assert env_proxy("https://teacher.example/v1") is None, "NO_PROXY covers the host"
