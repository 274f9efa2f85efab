"""Property: the ingest fast path (canonical JSON from the decoded dict) gives the same text, so the
same record id, as the model_dump path used for records built in code."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.datastore.validation import Rejected, parse_line
from services.domain.records import MAX_TIMESTAMP_S, LogRecord, canonical_json

# Any JSON value, with the awkward ones: big ints, -0.0, 1e-05-style floats, inf (what "1e400"
# decodes to), non-ASCII text. (Lone surrogates: test_records, they never get an id.)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False)
    | st.sampled_from([1e-05, 1e16, 1e22, -0.0, 0.1, 5e-324, 1.7976931348623157e308])
    | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)
# Unknown keys ("x-" keeps them clear of the declared fields, whose types are checked).
extras = st.dictionaries(st.text(max_size=6).map(lambda k: "x-" + k), json_values, max_size=2)
text = st.text(max_size=20)


def _with_extras(required: dict[str, Any], optional: dict[str, Any] | None = None) -> st.SearchStrategy[dict[str, Any]]:
    base = st.fixed_dictionaries(required, optional=optional or {})
    return st.builds(lambda b, e: {**e, **b}, base, extras)


tool_calls = st.lists(
    _with_extras(
        {"function": _with_extras({"name": text, "arguments": json_values.map(json.dumps)})},
        {"id": st.none() | text, "type": st.just("function")},
    ),
    max_size=2,
)
content = st.none() | text | st.lists(_with_extras({"type": st.just("text"), "text": text}), max_size=2)
messages = st.lists(
    _with_extras(
        {"role": st.sampled_from(["system", "developer", "user", "assistant", "tool"])},
        {"content": content, "name": st.none() | text, "tool_calls": st.none() | tool_calls,
         "tool_call_id": st.none() | text},
    ),
    min_size=1,
    max_size=3,
)
tools = st.lists(
    _with_extras(
        {"function": _with_extras({"name": text},
                                  {"description": st.none() | text,
                                   "parameters": st.none() | st.dictionaries(text, json_values, max_size=2)})},
        {"type": st.just("function")},
    ),
    max_size=2,
)
chat_records = _with_extras(
    {
        "workload_id": st.text(min_size=1, max_size=10),
        "client_id": st.text(min_size=1, max_size=10),
        "timestamp": st.integers(0, MAX_TIMESTAMP_S) | st.floats(0, MAX_TIMESTAMP_S),
        "request": _with_extras({"model": text, "messages": messages}, {"tools": st.none() | tools}),
        "response": _with_extras(
            {"choices": st.lists(
                _with_extras(
                    {"message": _with_extras({}, {"role": st.just("assistant"), "content": content,
                                                  "tool_calls": st.none() | tool_calls})},
                    {"index": st.integers(0, 3), "finish_reason": st.none() | text},
                ),
                min_size=1, max_size=2,
            )},
            {"usage": st.none() | st.dictionaries(text, json_values, max_size=3)},
        ),
    }
)
# Embedding vectors mix ints and floats: the dump turns 0 into 0.0, so these keep the dump path.
vectors = st.lists(st.integers(-3, 3) | st.floats(allow_nan=False), max_size=3) | st.just("AAAA")
embedding_records = st.integers(1, 3).flatmap(
    lambda n: _with_extras(
        {
            "workload_id": st.just("emb"),
            "client_id": st.just("c"),
            "timestamp": st.integers(0, MAX_TIMESTAMP_S),
            "request": _with_extras({"model": text, "input": st.lists(text, min_size=n, max_size=n)}),
            "response": _with_extras(
                {"data": st.lists(_with_extras({"embedding": vectors}, {"index": st.integers(0, 3)}),
                                  min_size=n, max_size=n)}
            ),
        }
    )
)


def _dump_path(value: dict[str, Any]) -> str:
    record = LogRecord.model_validate(value)
    return canonical_json(record.model_dump(mode="json", exclude_unset=True, by_alias=True))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=chat_records | embedding_records)
def test_fast_path_canonical_json_equals_the_dump_path(value: dict[str, Any]) -> None:
    fast = LogRecord.from_json_object(value)
    try:
        expected = _dump_path(value)
    except ValueError:  # inf in a typed float field: neither path can serialize it (quarantined)
        with pytest.raises(ValueError):
            fast.canonical_json()
        return
    assert fast.canonical_json() == expected
    # A store's body read back keeps its text (LogRecord.from_canonical_json): re-dumping agrees.
    reread = LogRecord.model_validate_json(expected)
    assert canonical_json(reread.model_dump(mode="json", exclude_unset=True, by_alias=True)) == expected
    try:
        expected_id: str | None = LogRecord.model_validate(value).id
    except UnicodeEncodeError:  # a lone surrogate: no id either way, parse_line quarantines it
        expected_id = None
    if expected_id is not None:
        assert fast.id == expected_id
        assert LogRecord.from_canonical_json(expected).id == expected_id


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=chat_records | embedding_records)
def test_parse_line_gives_the_id_of_the_record_built_in_code(value: dict[str, Any]) -> None:
    try:
        line = json.dumps(value, allow_nan=False).encode("utf-8")
        expected_id = LogRecord.model_validate(value).id
    except (ValueError, UnicodeEncodeError):
        return  # not a loggable line (inf) or a lone surrogate: covered by test_records
    outcome = parse_line(line)
    assert not isinstance(outcome, Rejected), outcome
    assert outcome.id == expected_id


def test_non_finite_float_keeps_the_dump_behaviour() -> None:
    line = json.dumps({"workload_id": "w", "client_id": "c", "timestamp": 1,
                       "request": {"model": "m", "messages": [{"role": "user", "content": "x"}]},
                       "response": {"choices": [{"message": {"content": "y"}}], "usage": {"t": 1}}})
    outcome = parse_line(line.replace('"t": 1', '"t": 1e400').encode())
    assert isinstance(outcome, LogRecord)
    assert '"usage":{"t":null}' in outcome.canonical_json()
