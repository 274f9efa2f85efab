"""ICL example selection: round-robin over classes, token budget, inserted after the system prompt."""

from __future__ import annotations

import hashlib

import numpy as np

from services.datastore.pipeline.icl import approx_tokens, select_similar, select_uniform, with_examples
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


def bag_of_words(texts: list[str]) -> np.ndarray:
    """A real (if simple) embedder: hashed word counts. Similar wording gives similar vectors."""
    out = np.zeros((len(texts), 256), dtype=np.float32)
    for row, text in enumerate(texts):
        for word in text.lower().split():
            out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % 256] += 1.0
    return out


def test_semantic_selection_prefers_similar_examples() -> None:
    train = [_ex("oil", i, text="crude oil prices jump opec") for i in range(5)] + [
        _ex("fed", i, text="fed raises interest rates") for i in range(5, 10)
    ]
    query = _ex("?", 99, text="opec cuts crude oil output").record
    (chosen,) = select_similar(train, [query], embed=bag_of_words, max_examples=2, budget_tokens=1000,
                               count_tokens=approx_tokens, pool_cap=100, seed=0)
    assert [pair[1]["content"] for pair in chosen] == ["[[[oil]]]", "[[[oil]]]"]
    capped = select_similar(train, [query], embed=bag_of_words, max_examples=5, budget_tokens=1000,
                            count_tokens=approx_tokens, pool_cap=3, seed=0)
    assert len(capped[0]) == 3
