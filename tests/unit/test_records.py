"""Records: the OpenAI formats, record ids, and the reason code of every validation failure."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from services.datastore.validation import Rejected, parse_line
from services.domain.records import QUARANTINE_REASONS, CallType, LogRecord
from tests.factories import chat_record_dict, embedding_record_dict, tool_record_dict


def test_chat_tool_and_embedding_records_validate_with_their_call_type() -> None:
    assert LogRecord.model_validate(chat_record_dict()).call_type is CallType.CHAT
    assert LogRecord.model_validate(tool_record_dict()).call_type is CallType.TOOL_CALLING
    assert LogRecord.model_validate(embedding_record_dict()).call_type is CallType.EMBEDDING


def test_the_answer_is_the_first_choice_of_a_chat_call_and_none_of_an_embedding_call() -> None:
    chat = LogRecord.model_validate(chat_record_dict())
    assert chat.answer is not None and chat.answer_text == "[[[Fed | Central Banks]]]"
    parts = chat_record_dict()
    parts["response"]["choices"][0]["message"]["content"] = [{"type": "text", "text": "[[[IPO"},
                                                              {"type": "text", "text": "]]]"}]
    assert LogRecord.model_validate(parts).answer_text == "[[[IPO]]]"
    tool = LogRecord.model_validate(tool_record_dict())
    assert tool.answer_text == "" and tool.answer is not None and tool.answer.tool_calls[0].function.name == "get_quote"
    embedding = LogRecord.model_validate(embedding_record_dict())
    assert embedding.answer is None and embedding.answer_text == ""


def test_record_id_is_sha256_of_canonical_json_and_covers_the_timestamp() -> None:
    a = LogRecord.model_validate(chat_record_dict())
    b = LogRecord.model_validate(dict(reversed(list(chat_record_dict().items()))))  # key order differs
    c = LogRecord.model_validate(chat_record_dict(timestamp=1_760_845_129))
    assert a.id == b.id
    assert a.id != c.id
    assert len(a.id) == 64 and int(a.id, 16) >= 0


def test_unknown_openai_fields_are_kept_and_change_the_id() -> None:
    data = chat_record_dict()
    data["request"]["temperature"] = 0.2
    record = LogRecord.model_validate(data)
    assert '"temperature":0.2' in record.canonical_json()
    assert record.id != LogRecord.model_validate(chat_record_dict()).id


def _with(path: str, value: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
    data = copy.deepcopy(base or chat_record_dict())
    *parents, last = path.split(".")
    node: Any = data
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    if value is _DELETE:
        del node[last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return data


_DELETE = object()

INVALID = [
    ("missing workload", _with("workload_id", _DELETE), "missing_field"),
    ("empty workload", _with("workload_id", ""), "invalid_value"),
    ("timestamp as string", _with("timestamp", "1760845128"), "wrong_type"),
    ("timestamp as bool", _with("timestamp", True), "wrong_type"),
    ("timestamp in ms", _with("timestamp", 1_760_845_128_000), "invalid_value"),
    ("negative timestamp", _with("timestamp", -1), "invalid_value"),
    ("request not an object", _with("request", "hello"), "unknown_call_type"),
    ("request of unknown kind", _with("request", {"model": "m", "prompt": "hi"}), "unknown_call_type"),
    ("messages empty", _with("request.messages", []), "empty_messages"),
    ("messages not a list", _with("request.messages", "hi"), "wrong_type"),
    ("role unknown", _with("request.messages.0.role", "robot"), "invalid_value"),
    ("content a number", _with("request.messages.0.content", 7), "wrong_type"),
    ("choices empty", _with("response.choices", []), "empty_choices"),
    ("choice without message", _with("response.choices.0.message", _DELETE), "missing_choice_message"),
    ("choice message null", _with("response.choices.0.message", None), "missing_choice_message"),
    (
        "tool arguments not JSON",
        _with("response.choices.0.message.tool_calls.0.function.arguments", "{ticker: AAPL", tool_record_dict()),
        "invalid_tool_arguments",
    ),
    (
        "tool arguments an object, not a string",
        _with("response.choices.0.message.tool_calls.0.function.arguments", {"ticker": "AAPL"}, tool_record_dict()),
        "wrong_type",
    ),
    ("embedding response to chat", _with("response", embedding_record_dict()["response"]), "mismatched_response"),
    ("embedding count", _with("response.data", [{"embedding": [0.1]}], embedding_record_dict()), "embedding_count_mismatch"),
    ("embedding data empty", _with("response.data", [], embedding_record_dict()), "empty_embeddings"),
    ("response without choices or data", _with("response", {"id": "x"}), "unknown_call_type"),
]


@pytest.mark.parametrize(("case", "data", "reason"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_records_get_their_reason_code(case: str, data: dict[str, Any], reason: str) -> None:
    import json

    outcome = parse_line(json.dumps(data).encode())
    assert isinstance(outcome, Rejected), case
    assert outcome.reason.value == reason, outcome.detail
    assert outcome.reason.value in QUARANTINE_REASONS
    assert outcome.detail  # says which field


RAW = [
    (b"\xff\xfe{}", "not_utf8"),
    (b"{", "invalid_json"),
    (b'{"a": NaN}', "invalid_json"),
    (b"[" * 100_000 + b"]" * 100_000, "invalid_json"),
    (b"[1, 2]", "not_an_object"),
    (b'"text"', "not_an_object"),
    (b"null", "not_an_object"),
    (b"{}", "missing_field"),
]


@pytest.mark.parametrize(("raw", "reason"), RAW, ids=[r[1] + str(i) for i, r in enumerate(RAW)])
def test_raw_lines_that_are_not_records(raw: bytes, reason: str) -> None:
    outcome = parse_line(raw)
    assert isinstance(outcome, Rejected)
    assert outcome.reason.value == reason


def test_lone_surrogate_is_rejected_not_crashing() -> None:
    import json

    line = json.dumps(chat_record_dict()).replace("Fed holds", "\\ud800 Fed holds").encode()
    outcome = parse_line(line)
    assert isinstance(outcome, Rejected) and outcome.reason.value == "invalid_value"


def test_utf8_bom_is_tolerated() -> None:
    import json

    outcome = parse_line(b"\xef\xbb\xbf" + json.dumps(chat_record_dict()).encode())
    assert isinstance(outcome, LogRecord)
