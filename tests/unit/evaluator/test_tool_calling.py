"""Tool-call metrics: names as a multiset, arguments as parsed JSON, text answers when no call was due."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.evaluator.metrics.tool_calling import canonical_arguments, score_turn, tool_calling_report


def call(name: str, arguments: Any = "{}") -> dict[str, Any]:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": f"call_{name}", "type": "function", "function": {"name": name, "arguments": args}}


WEATHER = call("get_weather", {"city": "Paris", "unit": "c"})
STOCK = call("get_quote", {"ticker": "NVDA"})


@pytest.mark.parametrize(
    ("reference", "predicted", "name_ok", "args_ok"),
    [
        pytest.param([WEATHER], [WEATHER], True, True, id="identical"),
        pytest.param([WEATHER], [call("get_weather", '{ "unit" : "c",\n "city": "Paris" }')], True, True, id="key-order-whitespace"),
        pytest.param([WEATHER], [call("get_weather", {"city": "Lyon", "unit": "c"})], True, False, id="wrong-value"),
        pytest.param([WEATHER], [call("get_weather", '{"city": "Paris", "unit": ')], True, False, id="invalid-json"),
        pytest.param([WEATHER], [call("get_forecast", {"city": "Paris", "unit": "c"})], False, False, id="wrong-name"),
        pytest.param([WEATHER, STOCK], [STOCK, WEATHER], True, True, id="parallel-any-order"),
        pytest.param([WEATHER, STOCK], [WEATHER], False, False, id="missing-parallel-call"),
        pytest.param([WEATHER], [WEATHER, WEATHER], False, False, id="duplicate-is-not-the-same-multiset"),
        pytest.param([WEATHER, WEATHER], [WEATHER, call("get_weather", {"city": "Rome", "unit": "c"})], True, False, id="multiset-args"),
        pytest.param("It is sunny.", "I cannot check that.", True, True, id="both-answered-text"),
        pytest.param([], "Sure.", True, True, id="empty-call-list-is-text"),
        pytest.param("It is sunny.", [WEATHER], False, False, id="called-when-teacher-did-not"),
        pytest.param([WEATHER], "It is sunny.", False, False, id="text-when-teacher-called"),
        pytest.param([WEATHER], None, False, False, id="unparseable"),
        pytest.param("Hi", None, False, False, id="unparseable-even-without-call"),
        pytest.param([call("f", {"n": 2})], [call("f", {"n": 2.0})], True, True, id="json-number-2-equals-2.0"),
        pytest.param([call("f", {"flag": True})], [call("f", {"flag": 1})], True, False, id="true-is-not-1"),
        pytest.param([call("f", {"a": [1, 2]})], [call("f", {"a": [2, 1]})], True, False, id="list-order-matters"),
    ],
)
def test_score_turn_table(reference: Any, predicted: Any, name_ok: bool, args_ok: bool) -> None:
    assert score_turn(reference, predicted) == (name_ok, args_ok)


def test_bare_function_dicts_and_dict_arguments_are_accepted() -> None:
    assert score_turn([{"name": "f", "arguments": {"b": 1, "a": 2}}], [call("f", '{"a":2,"b":1}')]) == (True, True)


def test_canonical_arguments() -> None:
    assert canonical_arguments('{"b": 1, "a": {"y": 2.0, "x": null}}') == '{"a":{"x":null,"y":2},"b":1}'
    assert canonical_arguments("{not json") is None
    assert canonical_arguments("NaN") is None  # not JSON a server would accept


def test_report_counts_and_score() -> None:
    reference = [[WEATHER], [STOCK], "hello", [WEATHER, STOCK]]
    predicted = [[WEATHER], [call("get_quote", "{bad")], "hi there", None]
    report = tool_calling_report(reference, predicted, bootstrap_samples=200)
    assert report["name_accuracy"] == pytest.approx(3 / 4)
    assert report["name_args_accuracy"] == pytest.approx(2 / 4)
    assert report["unparseable"] == 1
    assert report["invalid_arguments"] == 1
    assert report["teacher_called"] == 3 and report["student_called"] == 2
    lo, hi = report["name_args_accuracy_ci"]
    assert 0.0 <= lo <= 0.5 <= hi <= 1.0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=8,
)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=5), json_values, max_size=4), st.randoms(use_true_random=False))
def test_property_argument_key_order_and_spacing_never_matter(args: dict[str, Any], rnd: Any) -> None:
    keys = list(args)
    rnd.shuffle(keys)
    reordered = json.dumps({k: args[k] for k in keys}, indent=rnd.choice([None, 2]))
    assert score_turn([call("f", args)], [call("f", reordered)]) == (True, True)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=5), st.randoms(use_true_random=False))
def test_property_parallel_calls_compare_as_multiset(names: list[str], rnd: Any) -> None:
    calls = [call(n, {"i": i % 2}) for i, n in enumerate(names)]
    shuffled = calls[:]
    rnd.shuffle(shuffled)
    assert score_turn(calls, shuffled) == (True, True)
    assert score_turn(calls, shuffled[:-1])[0] is False


def test_typed_tool_call_records_are_accepted() -> None:
    from services.domain.records import ToolCall

    typed = ToolCall.model_validate({"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"unit": "c", "city": "Paris"}'}})
    assert score_turn([WEATHER], [typed]) == (True, True)
