"""Usage limits at the gateway's edge: the official `openai` client gets a 429 `RateLimitError` with
Retry-After over a key's requests per minute or a workload's tokens per day, and the counts survive a
gateway restart (they live in the route store's database)."""

from __future__ import annotations

import time
from pathlib import Path

import openai
import pytest

from services.deployment.gateway.app import create_gateway
from services.deployment.traffic_log import TrafficLogger
from services.domain.queue import make_celery_app
from services.domain.settings import Settings, UsageLimits, WorkloadSettings
from tests.gateway.fake_teacher import fake_teacher
from tests.gateway.test_gateway import settings_for
from tests.servers import serve

KEYS = [{"name": "desk-a", "token": "sk-a", "limits": {"requests_per_minute": 2}},
        {"name": "desk-b", "token": "sk-b"}]


def limited(tmp_path: Path, teacher_url: str) -> Settings:
    settings = settings_for(tmp_path, teacher_url, auth_enabled=True, keys=KEYS, limits_flush_interval_s=0.2)
    # The fake teacher's answers use 16 tokens: the third one crosses 40 tokens a day.
    return settings.model_copy(update={"workloads": {
        "news_topic": WorkloadSettings(limits=UsageLimits(tokens_per_day=40))}})  # a dump would hide the keys


def ask(url: str, key: str, workload: str) -> str:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
    answer = client.chat.completions.create(model=workload, messages=[{"role": "user", "content": "Fed holds rates"}])
    return answer.choices[0].message.content or ""


def test_limits_answer_429_with_retry_after_and_survive_a_restart(tmp_path: Path) -> None:
    if (second := time.time() % 60) > 45:  # the three requests of a minute's limit must fall in one minute
        time.sleep(61 - second)
    with serve(fake_teacher()) as teacher_url:
        settings = limited(tmp_path, teacher_url)

        def gateway() -> object:
            return create_gateway(settings, logger=TrafficLogger(make_celery_app(settings.queue, name="t"),
                                                                 settings.gateway.spool_path))

        with serve(gateway()) as url:
            assert ask(url, "sk-a", "filings") == ask(url, "sk-a", "filings") == "[[[Macro]]]"
            with pytest.raises(openai.RateLimitError, match="API key 'desk-a' reached its limit of 2 requests per "
                                                            "minute") as refused:
                ask(url, "sk-a", "filings")
            retry_after = int(refused.value.response.headers["retry-after"])
            assert 1 <= retry_after <= 60 and refused.value.code == "rate_limit_exceeded"
            assert ask(url, "sk-b", "filings") == "[[[Macro]]]", "another key has its own count"

            # Tokens per day, over every key: 16 + 16 + 16 crosses 40; the answer that crosses it is still given.
            for _ in range(3):
                ask(url, "sk-b", "news")
            with pytest.raises(openai.RateLimitError, match="workload 'news_topic' .* 40 tokens per day"):
                ask(url, "sk-b", "news")

        with serve(gateway()) as url:  # a restart: the counts come back from the database
            with pytest.raises(openai.RateLimitError, match="tokens per day"):
                ask(url, "sk-b", "news")
            assert ask(url, "sk-b", "filings") == "[[[Macro]]]", "other workloads are not limited"
