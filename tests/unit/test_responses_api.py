"""The Responses API <-> chat completions conversions (services/domain/responses_api.py), and Responses calls
as log records: accepted with their chat view, quarantined with a reason when malformed, redacted."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.datastore.pipeline.redact import redact_records
from services.datastore.validation import Rejected, parse_line
from services.domain.records import LogRecord, canonical_json
from services.domain.responses_api import (
    CompletedResponse,
    NotChatShaped,
    as_response,
    chat_request,
    chat_response,
    response_events,
)

TOOL = {"type": "function", "name": "get_quote", "description": "A stock quote.",
        "parameters": {"type": "object", "properties": {"ticker": {"type": "string"}}}, "strict": True}


def test_a_string_input_with_instructions_is_a_system_and_a_user_message() -> None:
    chat = chat_request({"model": "news", "instructions": "Label the topic.", "input": "Acme profit beats",
                         "temperature": 0.2, "top_p": 0.9, "max_output_tokens": 16, "store": False})
    assert chat == {"model": "news", "messages": [{"role": "system", "content": "Label the topic."},
                                                  {"role": "user", "content": "Acme profit beats"}],
                    "temperature": 0.2, "top_p": 0.9, "max_tokens": 16}


def test_input_items_become_messages_tool_calls_and_tool_results() -> None:
    body = {"model": "m", "tools": [TOOL], "tool_choice": {"type": "function", "name": "get_quote"}, "input": [
        {"role": "developer", "content": "Be brief."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Quote ACME"}]},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
         "content": [{"type": "output_text", "text": "Looking it up.", "annotations": []}]},
        {"type": "function_call", "call_id": "call_1", "name": "get_quote", "arguments": '{"ticker": "ACME"}'},
        {"type": "function_call", "call_id": "call_2", "name": "get_quote", "arguments": '{"ticker": "BETA"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "12.5"},
        {"type": "function_call_output", "call_id": "call_2", "output": "7.0"},
        {"role": "user", "content": [{"type": "input_text", "text": "Compare"},
                                     {"type": "input_image", "image_url": "https://x/chart.png", "detail": "low"}]},
    ]}
    chat = chat_request(body)
    calls = [{"id": f"call_{n}", "type": "function", "function": {"name": "get_quote", "arguments": f'{{"ticker": "{t}"}}'}}
             for n, t in ((1, "ACME"), (2, "BETA"))]
    assert chat["messages"] == [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "Quote ACME"},
        {"role": "assistant", "content": "Looking it up.", "tool_calls": calls},  # one turn: text and both calls
        {"role": "tool", "tool_call_id": "call_1", "content": "12.5"},
        {"role": "tool", "tool_call_id": "call_2", "content": "7.0"},
        {"role": "user", "content": [{"type": "text", "text": "Compare"},
                                     {"type": "image_url", "image_url": {"url": "https://x/chart.png", "detail": "low"}}]},
    ]
    assert chat["tools"] == [{"type": "function", "function": {k: v for k, v in TOOL.items() if k != "type"}}]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "get_quote"}}


def test_a_json_schema_text_format_is_a_response_format() -> None:
    schema = {"type": "json_schema", "name": "label", "schema": {"type": "object"}, "strict": True}
    chat = chat_request({"model": "m", "input": "x", "text": {"format": schema}})
    assert chat["response_format"] == {"type": "json_schema",
                                       "json_schema": {"name": "label", "schema": {"type": "object"}, "strict": True}}


@pytest.mark.parametrize(("body", "names"), [
    ({"model": "m", "input": "x", "tools": [{"type": "web_search"}]}, "web_search"),
    ({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]}, "item_reference"),
    ({"model": "m", "input": [{"role": "critic", "content": "x"}]}, "critic"),
    ({"model": "m", "input": []}, "no message"),
    ({"model": "m", "input": 3}, "`input`"),
])
def test_what_chat_cannot_hold_is_refused_naming_the_part(body: dict[str, Any], names: str) -> None:
    with pytest.raises(NotChatShaped, match=names):
        chat_request(body)


def test_a_response_object_is_a_chat_completion() -> None:
    response = {"id": "resp_1", "object": "response", "created_at": 7, "model": "big", "status": "completed",
                "output": [{"type": "reasoning", "id": "rs", "summary": []},
                           {"type": "message", "role": "assistant", "content": [
                               {"type": "output_text", "text": "[[[Earn", "annotations": []},
                               {"type": "output_text", "text": "ings]]]", "annotations": []}]}],
                "usage": {"input_tokens": 20, "output_tokens": 5, "total_tokens": 25}}
    assert chat_response(response) == {
        "id": "resp_1", "object": "chat.completion", "created": 7, "model": "big",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "[[[Earnings]]]"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}}


def test_function_call_outputs_are_tool_calls_and_a_cut_answer_has_finish_reason_length() -> None:
    calls = chat_response({"output": [{"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}]})
    assert calls["choices"][0]["message"] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}
    assert calls["choices"][0]["finish_reason"] == "tool_calls"
    cut = chat_response({"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}, "output": [
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "par"}]}]})
    assert cut["choices"][0]["finish_reason"] == "length"
    with pytest.raises(NotChatShaped, match="web_search_call"):
        chat_response({"output": [{"type": "web_search_call", "id": "ws"}]})


STUDENT = {"id": "chatcmpl-s", "object": "chat.completion", "created": 5, "model": "tiny-clf",
           "choices": [{"index": 0, "message": {"role": "assistant", "content": "[[[Macro]]]"}, "finish_reason": "stop"}],
           "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}}


def test_a_student_answer_is_a_responses_object_that_converts_back() -> None:
    response = as_response(STUDENT, {"model": "news", "input": "Fed holds", "instructions": "Label it.",
                                     "temperature": 0.0})
    assert response["object"] == "response" and response["status"] == "completed" and response["id"].startswith("resp_")
    assert response["model"] == "tiny-clf" and response["instructions"] == "Label it."
    assert response["usage"]["input_tokens"] == 9 and response["usage"]["output_tokens"] == 3
    back = chat_response(response)
    assert back["choices"] == STUDENT["choices"] and back["usage"] == STUDENT["usage"]
    tool_answer = {**STUDENT, "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": None,
        "tool_calls": [{"id": "call_9", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}]}}]}
    items = as_response(tool_answer, {"model": "m", "input": "x"})["output"]
    assert [(i["type"], i.get("call_id"), i.get("arguments")) for i in items] == [("function_call", "call_9", '{"a": 1}')]


def _events(raw: bytes) -> list[dict[str, Any]]:
    events = []
    for block in raw.split(b"\n\n"):
        lines = dict(line.split(b": ", 1) for line in block.split(b"\n") if line)
        if lines:
            event = json.loads(lines[b"data"])
            assert lines[b"event"].decode() == event["type"], "the event line names the data's type"
            events.append(event)
    return events


def test_the_events_of_an_answer_are_in_openai_order_and_end_with_the_whole_response() -> None:
    response = as_response(STUDENT, {"model": "news", "input": "Fed holds"})
    events = _events(b"".join(response_events(response)))
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.done", "response.content_part.done",
        "response.output_item.done", "response.completed"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[4]["delta"] == "[[[Macro]]]" and events[-1]["response"] == response
    assert events[0]["response"]["status"] == "in_progress" and events[0]["response"]["output"] == []


def test_the_completed_response_is_found_in_a_stream_cut_anywhere() -> None:
    response = as_response(STUDENT, {"model": "news", "input": "Fed holds"})
    raw = b"".join(response_events(response))
    for size in (1, 7, 64, len(raw)):
        watcher = CompletedResponse()
        for start in range(0, len(raw), size):
            watcher.feed(raw[start:start + size])
        assert watcher.finish() == response
    cut = CompletedResponse()
    cut.feed(raw[: raw.index(b"event: response.completed")])
    assert cut.finish() is None, "a stream that ended early has no completed response"


def _record(**changes: Any) -> dict[str, Any]:
    body = {"model": "big", "instructions": "Label it.", "input": "Reach me at jane.doe@example.com", "stream": False}
    response = {"id": "resp_1", "object": "response", "created_at": 1, "model": "big", "status": "completed",
                "output": [{"type": "message", "role": "assistant", "id": "msg_1",
                            "content": [{"type": "output_text", "text": "[[[Macro]]]", "annotations": []}]}],
                "usage": {"input_tokens": 20, "output_tokens": 5, "total_tokens": 25}}
    record = {"workload_id": "news_topic", "client_id": "desk-1", "timestamp": 1_760_000_000,
              "request": chat_request(body), "response": chat_response(response),
              "responses_api": {"request": body, "response": response}}
    return record | changes


def test_a_responses_record_is_a_chat_record_with_the_call_kept_and_a_stable_id() -> None:
    line = canonical_json(_record()).encode()
    record = parse_line(line)
    assert isinstance(record, LogRecord) and record.call_type.value == "chat"
    assert record.answer_text == "[[[Macro]]]" and record.responses_api is not None
    assert record.canonical_json() == line.decode(), "the canonical JSON is the record as logged"
    assert LogRecord.model_validate_json(line).id == record.id == LogRecord.from_canonical_json(line.decode()).id


def test_a_chat_record_without_the_field_keeps_its_id() -> None:
    chat = {key: value for key, value in _record().items() if key != "responses_api"}
    record = LogRecord.model_validate(chat)
    assert "responses_api" not in record.canonical_json()
    assert record.canonical_json() == canonical_json(chat)


@pytest.mark.parametrize(("call", "reason", "field"), [
    ({"request": {"model": "big"}, "response": {"output": []}}, "missing_field", "responses_api.request.input"),
    ({"request": {"model": "big", "input": 5}, "response": {"output": []}}, "wrong_type", "responses_api.request.input"),
    ({"request": {"model": "big", "input": "x"}, "response": {"status": "completed"}}, "missing_field",
     "responses_api.response.output"),
    ("not an object", "wrong_type", "responses_api"),
])
def test_a_malformed_responses_call_is_quarantined_with_a_reason(call: Any, reason: str, field: str) -> None:
    rejected = parse_line(canonical_json(_record(responses_api=call)).encode())
    assert isinstance(rejected, Rejected)
    assert rejected.reason.value == reason and rejected.detail.startswith(field)


def test_a_responses_call_with_an_embeddings_view_is_quarantined() -> None:
    record = _record(request={"model": "e", "input": "x"}, response={"data": [{"index": 0, "embedding": [0.1]}]})
    rejected = parse_line(canonical_json(record).encode())
    assert isinstance(rejected, Rejected) and rejected.reason.value == "mismatched_response"


def test_redaction_reaches_the_call_as_made() -> None:
    redacted, report = redact_records([LogRecord.model_validate(_record())])
    record = next(iter(redacted))
    text = record.canonical_json()
    assert "jane.doe@example.com" not in text and text.count("[REDACTED:EMAIL]") == 2
    assert report.counts["email"] == 2 and record.responses_api is not None
    assert record.responses_api.response.output[0]["id"] == "msg_1", "ids are not text: kept"
