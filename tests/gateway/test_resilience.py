"""The gateway in front of a teacher that fails: the official `openai` client -> our gateway (uvicorn) ->
a fault-injecting teacher in its own process (tests/gateway/faulty_teacher.py). Retries with backoff,
timeouts that hold, streams that break cleanly, a deployed student standing in, and no log record lost."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from services.customizer.service import train_candidate
from services.deployment.routes import Route, RouteStore
from services.domain.artifacts import find_artifacts
from services.domain.settings import Settings
from tests.gateway.fake_teacher import behind_teacher
from tests.gateway.test_gateway import logging_gateway, settings_for, stored
from tests.model_plane import SYSTEM, embedding_logs, model_plane
from tests.servers import free_port

# Short waits so the tests are quick; a 1-second timeout on the workload the slow cases use.
CALLS = {"max_attempts": 3, "retry_backoff_s": 0.05, "retry_backoff_max_s": 0.2, "retry_after_max_s": 2.0,
         "connect_timeout_s": 1.0, "timeout_s": 10.0}


@pytest.fixture(scope="module")
def teacher_url() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "tests.gateway.faulty_teacher", str(port)],
                               cwd=Path(__file__).parents[2])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{url}/calls", timeout=1)
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError("the faulty teacher did not start") from None
            time.sleep(0.1)
    yield url
    process.terminate()
    process.wait(10)


def calls(teacher_url: str, said: str) -> int:
    return int(httpx.get(f"{teacher_url}/calls").json().get(said, 0))


def resilient(settings: Settings) -> Settings:
    """`settings` with quick retries, and a workload `slow_news` that waits for the teacher 1 s, once."""
    return Settings.model_validate({**settings.model_dump(),
                                    "teacher": {**settings.teacher.model_dump(), **CALLS},
                                    "workloads": {"slow_news": {"teacher_calls": {"timeout_s": 1.0,
                                                                                  "max_attempts": 1}}}})


def ask(client: openai.OpenAI, said: str, *, workload: str = "news", stream: bool = False) -> Any:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": said}]
    if stream:
        return "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model=workload, messages=messages, stream=True) if c.choices)
    return client.chat.completions.with_raw_response.create(model=workload, messages=messages)


def metric(gateway_url: str, prefix: str) -> float:
    """The sum of the metric rows that start with `prefix` (a name and its first labels)."""
    rows = httpx.get(f"{gateway_url}/metrics").text.splitlines()
    return sum(float(row.rsplit(" ", 1)[1]) for row in rows if row.startswith(prefix))


def test_retries_timeouts_and_broken_streams(tmp_path: Path, teacher_url: str) -> None:
    settings = resilient(settings_for(tmp_path, teacher_url))
    with logging_gateway(settings) as (gateway_url, client):

        # 5xx twice, then an answer: the client sees one answer, the teacher three calls.
        raw = ask(client, "fail:503:2")
        assert raw.parse().choices[0].message.content == "[[[Macro]]]"
        assert raw.headers["x-flywheel-served-by"] == "teacher" and calls(teacher_url, "fail:503:2") == 3
        assert metric(gateway_url, 'flywheel_gateway_teacher_retries_total{reason="503",workload="news_topic"}') == 2
        # A stream is retried too, before its first byte.
        assert ask(client, "fail:502:1", stream=True) == "[[[Macro]]]"

        # 429 with a Retry-After the gateway may wait for: waited, then answered.
        started = time.monotonic()
        assert ask(client, "fail:429:1:1").parse().choices[0].message.content == "[[[Macro]]]"
        assert time.monotonic() - started >= 1.0, "Retry-After is honoured"
        # One that asks for longer than retry_after_max_s: passed on at once, Retry-After included.
        with pytest.raises(openai.RateLimitError, match="teacher says 429") as refused:
            ask(client, "fail:429:5:60")
        assert refused.value.response.headers["retry-after"] == "60" and calls(teacher_url, "fail:429:5:60") == 1

        # Every attempt fails: the teacher's last error, as it sent it, after max_attempts calls.
        with pytest.raises(openai.InternalServerError, match="teacher says 500"):
            ask(client, "fail:500:9")
        assert calls(teacher_url, "fail:500:9") == 3
        # A 4xx is the request's fault: passed on, never retried.
        with pytest.raises(openai.BadRequestError):
            ask(client, "fail:400:9")
        assert calls(teacher_url, "fail:400:9") == 1

        # A teacher slower than the workload's timeout: a 504 naming the setting, well before the teacher answers.
        started = time.monotonic()
        with pytest.raises(openai.APIStatusError, match="did not answer within 1 s") as slow:
            ask(client, "slow:8", workload="slow_news")
        assert slow.value.status_code == 504 and slow.value.code == "upstream_timeout"
        assert time.monotonic() - started < 5, "no request hangs past its timeout"
        # A stream that stalls mid-way past the timeout, and one whose connection drops: an error event, not a hang.
        started = time.monotonic()
        with pytest.raises(openai.APIError, match="stream broke off"):
            ask(client, "stall-stream:8", workload="slow_news", stream=True)
        assert time.monotonic() - started < 5
        with pytest.raises(openai.APIError, match="stream broke off"):
            ask(client, "drop-stream", stream=True)

        # The Responses API the same way: retried, and a dropped stream ends in an error event.
        answer = client.responses.create(model="news", instructions=SYSTEM, input="fail:503:1")
        assert answer.output_text == "[[[Macro]]]" and calls(teacher_url, "fail:503:1") == 2
        with pytest.raises(openai.APIError, match="stream broke off"):
            for _ in client.responses.create(model="news", instructions=SYSTEM, input="drop-stream", stream=True):
                pass

        # Nothing lost, nothing invented: one record per complete teacher answer (the broken streams and
        # the errors are not answers).
        answered = ["fail:503:2", "fail:502:1", "fail:429:1:1", "fail:503:1"]
        records = stored(settings, "news_topic", len(answered))
        assert sorted(r.request.messages[-1].content for r in records) == sorted(answered)
        time.sleep(1)
        assert len(stored(settings, "news_topic", len(answered) + 1, timeout=0)) == len(answered)
        assert metric(gateway_url, 'flywheel_gateway_requests_total{endpoint="chat",served_by="teacher",status="502"') == 2, \
            "the two broken chat streams"


@pytest.fixture(scope="module")
def student(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Route]:
    """A tiny classifier trained for real, and a route in shadow (the teacher answers; the student is ready)."""
    plane = model_plane(tmp_path_factory.mktemp("plane"), records=120, finetune="head", lexical_mix=0.0)
    artifact = train_candidate(plane.settings, "tiny-clf", plane.dataset.dataset_id)
    (found,) = [a for a in find_artifacts(Path(plane.settings.artifacts.root), candidate="tiny-clf")
                if a.artifact_id == artifact.artifact_id]
    route = Route(workload_id="news_topic", phase="shadow", candidate="tiny-clf", artifact_id=found.artifact_id,
                  artifact_path=found.path, student_kind=found.kind, base_model=found.base_model,
                  static_prompt=found.static_prompt, prompt_tag=found.prompt_tag, labels=found.labels,
                  answer_template=found.answer_template)
    return plane.settings, route


def test_a_deployed_student_stands_in_for_a_failing_teacher(tmp_path: Path, teacher_url: str,
                                                            student: tuple[Settings, Route]) -> None:
    plane_settings, route = student
    for url, failing in ((teacher_url, "fail:503:99"), (f"http://127.0.0.1:{free_port()}", "unreachable")):
        settings = resilient(behind_teacher(plane_settings, url, tmp_path / failing.replace(":", "-")))
        routes = RouteStore(settings.job_store.url)
        routes.set(route, action="test", detail={"reason": "test: a shadow student"})
        with logging_gateway(settings) as (gateway_url, client):
            raw = ask(client, failing, workload="news_topic")
            assert raw.headers["x-flywheel-served-by"] == "student-fallback"
            assert raw.parse().choices[0].message.content.startswith("[[["), "the student answers in the label format"
            assert ask(client, failing, workload="news_topic", stream=True).startswith("[[["), "streamed too"
            raw_responses = client.responses.with_raw_response.create(model="news_topic", instructions=SYSTEM,
                                                                      input=failing)
            assert raw_responses.headers["x-flywheel-served-by"] == "student-fallback", "and the Responses API"
            assert raw_responses.parse().output_text.startswith("[[[")
            why = "status_503" if failing.startswith("fail") else "upstream_unreachable"
            assert metric(gateway_url, f'flywheel_gateway_student_fallback_total{{endpoint="chat",reason="{why}",'
                                       f'workload="news_topic"}}') == 2
            assert metric(gateway_url, 'flywheel_gateway_student_fallback_total{endpoint="responses"') == 1
            # A workload with no student: the teacher's failure, OpenAI-shaped.
            with pytest.raises(openai.APIStatusError) as failed:
                ask(client, failing, workload="other")
            assert failed.value.status_code in (502, 503) and failed.value.body is not None
        routes.close()


def test_an_embedding_student_stands_in_too(tmp_path: Path, teacher_url: str) -> None:
    plane = model_plane(tmp_path / "plane", logs=embedding_logs(60), workload_id="filing_search")
    artifact = train_candidate(plane.settings, "tiny-emb", plane.dataset.dataset_id)
    (found,) = [a for a in find_artifacts(Path(plane.settings.artifacts.root), candidate="tiny-emb")
                if a.artifact_id == artifact.artifact_id]
    settings = resilient(behind_teacher(plane.settings, teacher_url, tmp_path))
    routes = RouteStore(settings.job_store.url)
    routes.set(Route(workload_id="filing_search", phase="canary", canary_percent=0, candidate="tiny-emb",
                     artifact_id=found.artifact_id, artifact_path=found.path, student_kind=found.kind,
                     base_model=found.base_model), action="test", detail={"reason": "test: a canary at 0%"})
    with logging_gateway(settings) as (gateway_url, client):
        teacher = client.embeddings.with_raw_response.create(model="filing_search", input="10-K risk factors")
        assert teacher.headers["x-flywheel-served-by"] == "teacher", "a 0% canary: the teacher answers"
        raw = client.embeddings.with_raw_response.create(model="filing_search", input=["fail:503:8", "8-K"])
        assert raw.headers["x-flywheel-served-by"] == "student-fallback"
        vectors = raw.parse().data
        assert len(vectors) == 2 and vectors[0].embedding != [0.5] * 16, "the student's vectors, not the teacher's"
        assert calls(teacher_url, "fail:503:8") == 3, "after the teacher's retries"
    routes.close()
