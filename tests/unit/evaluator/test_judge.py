"""LLM-as-judge against a real local OpenAI-compatible HTTP server (no mocks of the openai library)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import openai
import pytest
from pydantic import SecretStr

from services.domain.errors import ConfigError, ExternalServiceError
from services.domain.settings import EvaluationSettings, JudgeSettings
from services.evaluator.judge import JudgeClient, build_judge_messages, judge_report, parse_judge_score
from services.evaluator.scoring import judge_from_settings, score_predictions

# --------------------------------------------------------------------------- a tiny judge server


@dataclass
class JudgeServer:
    """Speaks /v1/chat/completions. `failures` are answered first (status, headers), then `reply(body)`."""

    url: str = ""
    reply: Callable[[dict[str, Any]], str] = lambda body: "Fine. Score: 7"
    failures: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    delay_s: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(state: JudgeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep test output clean
            pass

        def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with state.lock:
                state.requests.append(body)
                state.headers.append({k.lower(): v for k, v in self.headers.items()})
                failure = state.failures.pop(0) if state.failures else None
            if state.delay_s:
                time.sleep(state.delay_s)
            if self.path != "/v1/chat/completions":
                self._send(404, {"error": {"message": "no such route"}})
            elif failure is not None:
                status, headers = failure
                self._send(status, {"error": {"message": f"canned {status}", "type": "server_error"}}, headers)
            else:
                content = state.reply(body)
                self._send(200, {
                    "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                })

    return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The timeout test hangs up before the reply is written; that broken pipe is expected.
        pass


@pytest.fixture
def server() -> Iterator[JudgeServer]:
    state = JudgeServer()
    httpd = _QuietServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


def make_judge(server: JudgeServer, *, timeout: float = 5.0, **kwargs: Any) -> tuple[JudgeClient, list[float]]:
    """A judge on the real openai client (its own retries off); backoff sleeps are recorded, not slept."""
    slept: list[float] = []
    client = openai.OpenAI(base_url=server.url, api_key="test-key", timeout=timeout, max_retries=0)
    return JudgeClient(client, model="judge-model", backoff_s=0.5, sleep=slept.append, **kwargs), slept


def candidate_of(body: dict[str, Any]) -> str:
    user = body["messages"][-1]["content"]
    return user.split("## Candidate answer\n", 1)[1].split("\n\n", 1)[0]


REQUEST = [{"role": "user", "content": "Summarise the Fed decision."}]

# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Score: 10", 10.0),
        ("Matches the reference closely.\nScore: 10", 10.0),
        ("10/10", 10.0),
        ("I'd say 1/10", 1.0),
        ("**8**", 8.0),
        ("**Score:** 9", 9.0),
        ("Score: **10**", 10.0),
        ("rating: 7 out of 10", 7.0),
        ("Rating: 7 out of 10.", 7.0),
        ('{"score": 9}', 9.0),
        ('```json\n{"score": 10, "reason": "same"}\n```', 10.0),
        ('{"score": "6"}', 6.0),
        ("The score is 6.", 6.0),
        ("Score: 7.5", 7.5),
        ("10", 10.0),
        ("3.", 3.0),
        ("It is 10 times longer than needed. Score: 4", 4.0),  # the explicit score wins over stray numbers
        ("First draft score: 3. Final score: 8", 8.0),  # the last verdict wins
        ("Score: 11", None),
        ("Score: 0", None),
        ('{"score": 42}', None),
        ("Score: 100", None),  # not read as 10
        ("It is good.", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_judge_score(reply: str | None, expected: float | None) -> None:
    assert parse_judge_score(reply) == expected


def test_judge_prompt_carries_rubric_request_reference_and_candidate() -> None:
    messages = build_judge_messages(REQUEST, "Rates held at 5%.", "The Fed kept rates.")
    assert messages[0]["role"] == "system" and "Score: N" in messages[0]["content"]
    user = messages[1]["content"]
    assert "Summarise the Fed decision." in user and "Rates held at 5%." in user and "The Fed kept rates." in user


# --------------------------------------------------------------------------- talking to a server


def test_judge_reads_the_reply_of_a_real_endpoint(server: JudgeServer) -> None:
    server.reply = lambda body: "Faithful and complete.\nScore: 10"
    judge, slept = make_judge(server)
    verdict = judge.judge(REQUEST, "Rates held.", "The Fed held rates.")
    assert verdict.score == 10.0 and verdict.raw.endswith("Score: 10")
    sent = server.requests[0]
    assert sent["model"] == "judge-model" and sent["temperature"] == 0
    assert candidate_of(sent) == "The Fed held rates."
    assert server.headers[0]["authorization"] == "Bearer test-key"
    assert slept == []


def test_retries_5xx_and_429_with_backoff_then_succeeds(server: JudgeServer) -> None:
    server.failures = [(500, {}), (429, {"retry-after": "3"}), (503, {})]
    server.reply = lambda body: "Score: 8"
    judge, slept = make_judge(server)
    assert judge.judge(REQUEST, "ref", "cand").score == 8.0
    assert len(server.requests) == 4
    assert slept == [0.5, 3.0, 2.0]  # exponential backoff; the 429's Retry-After is honoured


def test_gives_up_after_max_attempts_as_retryable(server: JudgeServer) -> None:
    server.failures = [(502, {})] * 10
    judge, slept = make_judge(server, max_attempts=3)
    with pytest.raises(ExternalServiceError, match="after 3 attempts") as info:
        judge.judge(REQUEST, "ref", "cand")
    assert info.value.retryable is True
    assert len(server.requests) == 3 and len(slept) == 2


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_client_errors_are_not_retried(server: JudgeServer, status: int) -> None:
    server.failures = [(status, {})]
    judge, slept = make_judge(server)
    with pytest.raises(ExternalServiceError) as info:
        judge.judge(REQUEST, "ref", "cand")
    assert info.value.retryable is False
    assert len(server.requests) == 1 and slept == []


def test_timeouts_are_retried(server: JudgeServer) -> None:
    server.delay_s = 0.5
    judge, slept = make_judge(server, timeout=0.1, max_attempts=2)
    with pytest.raises(ExternalServiceError) as info:
        judge.judge(REQUEST, "ref", "cand")
    assert info.value.retryable is True and len(slept) == 1


def test_judge_report_scores_judged_items_and_counts_failures(server: JudgeServer) -> None:
    replies = {"perfect": "Score: 10", "poor": "2/10", "rambling": "I cannot decide."}
    server.reply = lambda body: replies[candidate_of(body)]
    judge, _ = make_judge(server, concurrency=3)
    report = judge_report(
        judge,
        [REQUEST] * 4,
        ["ref"] * 4,
        ["perfect", "poor", "rambling", None],
        bootstrap_samples=200,
    )
    # perfect -> 1.0, poor -> 1/9, unparseable candidate -> 0.0; the unparsed judgement is left out.
    assert report["judge_score"] == pytest.approx((1.0 + 1 / 9 + 0.0) / 3)
    assert report["judge_unparsed"] == 1 and report["unparseable"] == 1
    assert report["judge_mean_raw"] == pytest.approx(6.0)
    assert len(server.requests) == 3  # the None candidate is never sent to the judge
    lo, hi = report["judge_score_ci"]
    assert 0.0 <= lo <= report["judge_score"] <= hi <= 1.0


def test_score_predictions_for_chat_uses_the_judge_and_keeps_the_lexical_metric(server: JudgeServer) -> None:
    server.reply = lambda body: '{"score": 10}'
    settings = EvaluationSettings(
        judge=JudgeSettings(enabled=True, base_url=server.url, model="judge-model", api_key=SecretStr("k"), timeout_s=5)
    )
    judge = judge_from_settings(settings)
    assert judge is not None
    scored = score_predictions(
        "chat", ["Rates held at 5%"], ["Rates held at 5%"], settings, judge, requests=[REQUEST]
    )
    assert scored.metric_name == "score_vs_teacher"
    assert scored.score == 1.0 and scored.metrics["scorer"] == "judge"
    assert scored.metrics["token_f1"] == 1.0
    assert server.headers[0]["authorization"] == "Bearer k"


def test_judge_needs_an_endpoint() -> None:
    assert judge_from_settings(EvaluationSettings()) is None
    with pytest.raises(ConfigError):
        JudgeClient.from_settings(JudgeSettings())
