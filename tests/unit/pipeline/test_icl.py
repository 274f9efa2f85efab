"""ICL example selection: round-robin over classes, token budget, inserted after the system prompt."""

from __future__ import annotations

from services.datastore.pipeline.icl import approx_tokens, select_uniform, with_examples
from services.datastore.pipeline.split import Example
from services.domain.records import LogRecord
from tests.factories import chat_record_dict


def _ex(label: str, i: int, text: str = "headline") -> Example[None]:
    data = chat_record_dict(timestamp=i)
    data["request"]["messages"][1]["content"] = f"{text} {i}"
    data["response"]["choices"][0]["message"]["content"] = f"[[[{label}]]]"
    return Example(LogRecord.model_validate(data), label)


def test_every_class_before_any_twice() -> None:
    train = [_ex("a", i) for i in range(10)] + [_ex("b", i) for i in range(10, 12)] + [_ex("c", 20)]
    chosen = select_uniform(train, max_examples=3, budget_tokens=10_000, count_tokens=approx_tokens, seed=1)
    assert sorted(pair[1]["content"] for pair in chosen) == ["[[[a]]]", "[[[b]]]", "[[[c]]]"]


def test_token_budget_is_respected() -> None:
    train = [_ex("a", i, text="word " * 50) for i in range(10)]
    chosen = select_uniform(train, max_examples=10, budget_tokens=200, count_tokens=lambda t: len(t.split()), seed=0)
    assert 1 <= len(chosen) <= 3
    assert sum(len(t["content"].split()) for pair in chosen for t in pair) <= 200


def test_examples_go_after_the_system_prompt() -> None:
    record = _ex("a", 99).record
    examples = [[{"role": "user", "content": "u1"}, {"role": "assistant", "content": "[[[b]]]"}]]
    roles = [m["role"] for m in with_examples(record, examples)["request"]["messages"]]
    assert roles == ["system", "user", "assistant", "user"]
    assert LogRecord.model_validate(with_examples(record, examples))  # still a valid record
