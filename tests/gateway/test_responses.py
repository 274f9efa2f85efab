"""`POST /v1/responses` over real HTTP: the official `openai` client -> our gateway (uvicorn) -> the teacher
stand-in (uvicorn), plain and streamed (`stream=True` and the `responses.stream()` helper); teacher answers
are logged through the queue into the log store with their chat view and the call as made; a promoted
route's student answers (plain and streamed) with the teacher monitoring in the background, and a shadow
route's student is compared in the background."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from services.deployment.routes import Route, RouteStore
from services.domain.records import LogRecord
from services.domain.settings import Settings
from tests.gateway.fake_teacher import fake_teacher
from tests.gateway.test_gateway import logging_gateway, settings_for, stored
from tests.servers import serve, wait_until

QUOTE_TOOL = {"type": "function", "name": "get_quote", "description": "A stock quote.",
              "parameters": {"type": "object", "properties": {"ticker": {"type": "string"}}}}



def test_responses_are_answered_by_the_teacher_streamed_or_not_and_logged(tmp_path: Path) -> None:
    teacher = fake_teacher()
    with serve(teacher) as teacher_url:
        settings = settings_for(tmp_path, teacher_url)
        with logging_gateway(settings) as (gateway_url, client):
            raw = client.responses.with_raw_response.create(
                model="news", instructions="Label the topic.", input="Acme quarterly profit beats",
                temperature=0.0, max_output_tokens=16, extra_headers={"X-Flywheel-Client": "desk-7"})
            response = raw.parse()
            assert response.output_text == "[[[Earnings]]]" and response.model == "big-teacher"
            assert raw.headers["x-flywheel-served-by"] == "teacher"
            assert teacher.state.received[-1]["model"] == "big-teacher" and "metadata" not in teacher.state.received[-1]

            events = list(client.responses.create(model="news", input="Fed holds rates", stream=True,
                                                  metadata={"client_id": "desk-8"}))
            deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
            assert deltas == "[[[Macro]]]" and events[-1].type == "response.completed"

            with client.responses.stream(model="news", extra_headers={"X-Flywheel-Client": "desk-9"}, input=[
                    {"role": "user", "content": [{"type": "input_text", "text": "What drove the rally?"}]},
                    {"role": "assistant", "content": "Rates."},
                    {"role": "user", "content": "Quarterly earnings, then?"}]) as stream:
                texts = [e.delta for e in stream if e.type == "response.output_text.delta"]
                final = stream.get_final_response()
            assert "".join(texts) == final.output_text == "[[[Earnings]]]"

            tool = client.responses.create(model="news", input="Quote ACME", tools=[QUOTE_TOOL],
                                           extra_headers={"X-Flywheel-Client": "desk-10"})
            assert [(o.type, getattr(o, "name", None)) for o in tool.output] == [("function_call", "get_quote")]

            with pytest.raises(openai.BadRequestError, match="usage policy") as refused:
                client.responses.create(model="news", input="please refuse")
            assert refused.value.status_code == 400 and refused.value.code == "policy", "the teacher's 4xx, as sent"

            missing = httpx.post(f"{gateway_url}/v1/responses", json={"model": "news"})
            assert missing.status_code == 400
            assert missing.json()["error"] == {"message": "`input` is required", "type": "invalid_request_error",
                                               "param": "input", "code": None}

            stateful = client.responses.create(model="news", input="Fed earnings call", previous_response_id="resp_0")
            assert stateful.output_text == "[[[Earnings]]]" and teacher.state.received[-1]["previous_response_id"]
            searched = client.responses.create(model="news", input="Fed minutes", tools=[{"type": "web_search"}])
            assert searched.output_text == "[[[Macro]]]", "a built-in tool: the teacher answers (no chat view to log)"
            metrics = httpx.get(f"{gateway_url}/metrics").text
            for reason in ("previous_response_id", "not_chat_shaped"):
                assert f'flywheel_gateway_responses_not_logged_total{{reason="{reason}",workload="news_topic"}} 1.0' in metrics
            records = stored(settings, "news_topic", 4)
            time.sleep(0.5)  # a fifth record would be a bug: give it the time to arrive
            records = stored(settings, "news_topic", 5, timeout=1)
    by_client: dict[str, LogRecord] = {r.client_id: r for r in records}
    assert sorted(by_client) == ["desk-10", "desk-7", "desk-8", "desk-9"], "refusals and stateful calls are not logged"

    plain = by_client["desk-7"].model_dump(mode="json", exclude_unset=True)
    assert plain["request"] == {"model": "big-teacher", "temperature": 0.0, "max_tokens": 16, "messages": [
        {"role": "system", "content": "Label the topic."}, {"role": "user", "content": "Acme quarterly profit beats"}]}
    assert plain["response"]["choices"][0]["message"] == {"role": "assistant", "content": "[[[Earnings]]]"}
    assert plain["response"]["usage"]["prompt_tokens"] == 20
    assert plain["responses_api"]["request"]["input"] == "Acme quarterly profit beats", "the body as the teacher got it"
    assert plain["responses_api"]["request"]["model"] == "big-teacher"
    assert plain["responses_api"]["response"]["id"] == "resp_teacher1"

    assert by_client["desk-8"].answer_text == "[[[Macro]]]", "a stream is logged from its response.completed event"
    conversation = by_client["desk-9"].model_dump(mode="json", exclude_unset=True)["request"]["messages"]
    assert [m["role"] for m in conversation] == ["user", "assistant", "user"]
    assert by_client["desk-10"].call_type.value == "tool_calling"
    traffic = RouteStore(settings.job_store.url).traffic("news_topic")
    assert traffic["teacher"]["requests"] == 6 and traffic["teacher"]["input_tokens"] == 120, "Responses usage counted"


class LabelStudent:
    """A student serving backend in memory (the `ServingBackend` protocol): answers `[[[Macro]]]`."""

    def __init__(self) -> None:
        self.asked: list[dict[str, Any]] = []

    def chat(self, route: Route, body: dict[str, Any]) -> dict[str, Any]:
        self.asked.append(body)
        return {"id": "chatcmpl-student", "object": "chat.completion", "created": 3, "model": route.candidate,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "[[[Macro]]]"},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}}

    def embed(self, route: Route, inputs: list[str], dimensions: int | None) -> dict[str, Any]:
        raise NotImplementedError("a chat student")


def test_a_promoted_student_answers_responses_and_is_compared_with_the_teacher(tmp_path: Path) -> None:
    teacher, student = fake_teacher(), LabelStudent()
    with serve(teacher) as teacher_url:
        base = settings_for(tmp_path, teacher_url)
        settings = Settings.model_validate({**base.model_dump(), "promotion": {"monitor_share": 1.0}})
        routes = RouteStore(settings.job_store.url)
        routes.set(Route(workload_id="news_topic", phase="full", candidate="tiny-clf",
                         student_kind="encoder_classifier"), action="deploy")
        with logging_gateway(settings, backend=student) as (gateway_url, client):
            raw = client.responses.with_raw_response.create(model="news", instructions="Label the topic.",
                                                           input="Fed holds rates")
            answer = raw.parse()
            assert raw.headers["x-flywheel-served-by"] == "student" and raw.headers["x-flywheel-route-phase"] == "full"
            assert answer.output_text == "[[[Macro]]]" and answer.model == "tiny-clf" and answer.status == "completed"
            assert answer.usage is not None and answer.usage.input_tokens == 7
            assert student.asked[-1]["messages"] == [{"role": "system", "content": "Label the topic."},
                                                     {"role": "user", "content": "Fed holds rates"}]

            streamed = client.responses.with_raw_response.create(model="news", input="Fed holds", stream=True)
            assert streamed.headers["x-flywheel-served-by"] == "student"
            events = list(streamed.parse())
            assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "[[[Macro]]]"
            with client.responses.stream(model="news", input="Rates steady") as stream:
                final = stream.get_final_response()
            assert final.output_text == "[[[Macro]]]" and final.model == "tiny-clf"

            # Every student answer was also sent to the teacher in the background (monitor_share 1.0): logged and compared.
            wait_until(lambda: len(teacher.state.received) == 3)
            assert all(body["stream"] is False for body in teacher.state.received)
            records = stored(settings, "news_topic", 3)
            wait_until(lambda: routes.agreement(routes.get("news_topic", fresh=True))[0] == 3)
            monitored = routes.agreement(routes.get("news_topic", fresh=True))

            # Shadow: the teacher answers (and is logged), the student answers the chat view in the background.
            routes.set(routes.get("news_topic", fresh=True).model_copy(update={"phase": "shadow"}), action="promote")
            time.sleep(1.1)  # the gateway caches a route for a second
            raw = client.responses.with_raw_response.create(model="news", input="Acme profit beats")
            assert raw.headers["x-flywheel-served-by"] == "teacher" and raw.parse().output_text == "[[[Earnings]]]"
            wait_until(lambda: routes.agreement(routes.get("news_topic", fresh=True)) == (1, 0.0))  # student: Macro
            assert student.asked[-1]["messages"] == [{"role": "user", "content": "Acme profit beats"}]
    assert len(records) == 3 and all(r.responses_api is not None for r in records)  # the shadow's comes after
    assert {r.answer_text for r in records} == {"[[[Macro]]]"}
    assert monitored == (3, 1.0), "the teacher answered [[[Macro]]] to all three: they agree"
