"""In-context-learning examples for the ICL evaluation, chosen from the train split only.

`uniform_distribution` takes examples round-robin over strata (labels / tool names), so every
class is shown before any class is shown twice, within a token budget measured with the
student's tokenizer (a callable). Examples are inserted as user/assistant turns after the
system prompt of each eval record.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from services.datastore.pipeline.split import Example
from services.domain.records import ChatRequest, LogRecord

TokenCounter = Callable[[str], int]


def approx_tokens(text: str) -> int:
    """Fallback when no tokenizer is available: ~4 characters per token (recorded in the manifest)."""
    return max(1, len(text) // 4)


def last_user_text(record: LogRecord) -> str | None:
    """The text of the last user turn of a chat record; None for other records."""
    if not isinstance(record.request, ChatRequest):
        return None
    users = [m for m in record.request.messages if m.role == "user"]
    return users[-1].text if users else None


def example_turns(record: LogRecord) -> list[dict[str, Any]] | None:
    """The last user turn and the teacher's answer of a chat record, as two messages."""
    question, answer = last_user_text(record), record.answer
    if question is None or answer is None:
        return None
    if not (answer.text or answer.tool_calls):
        return None
    reply: dict[str, Any] = {"role": "assistant", "content": answer.text or None}
    if answer.tool_calls:  # tool-calling examples show the call itself
        reply["tool_calls"] = [call.model_dump(mode="json", exclude_unset=True) for call in answer.tool_calls]
    return [{"role": "user", "content": question}, reply]


def turn_text(turn: dict[str, Any]) -> str:
    """What a turn costs in the prompt: its text plus any tool calls as JSON."""
    return (turn.get("content") or "") + (json.dumps(turn["tool_calls"]) if turn.get("tool_calls") else "")


def select_uniform(
    train: Sequence[Example[Any]],
    *,
    max_examples: int,
    budget_tokens: int,
    count_tokens: TokenCounter,
    seed: int,
) -> list[list[dict[str, Any]]]:
    """Pick up to max_examples example turn-pairs, round-robin over strata, within budget."""
    by_stratum: dict[Hashable, list[Example[Any]]] = defaultdict(list)
    for example in sorted(train, key=lambda e: e.record.id):
        by_stratum[example.stratum].append(example)
    rng = random.Random(seed)
    queues = [by_stratum[k] for k in sorted(by_stratum, key=repr)]
    for queue in queues:
        rng.shuffle(queue)
    rng.shuffle(queues)
    chosen: list[list[dict[str, Any]]] = []
    used = 0
    while len(chosen) < max_examples and any(queues):
        for queue in queues:
            if not queue or len(chosen) >= max_examples:
                continue
            turns = example_turns(queue.pop().record)
            if turns is None:
                continue
            cost = sum(count_tokens(turn_text(t)) for t in turns)
            if used + cost > budget_tokens:
                continue
            chosen.append(turns)
            used += cost
    return chosen


def with_examples(record: LogRecord, examples: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """The record as JSON with the examples inserted after the leading system/developer turns."""
    data = record.model_dump(mode="json", exclude_unset=True, by_alias=True)
    messages = data["request"]["messages"]
    head = 0
    while head < len(messages) and messages[head]["role"] in ("system", "developer"):
        head += 1
    flat = [turn for pair in examples for turn in pair]
    data["request"]["messages"] = messages[:head] + flat + messages[head:]
    return data


Embedder = Callable[[list[str]], Any]  # texts -> array (n, d)


def select_similar(
    train: Sequence[Example[Any]],
    queries: Sequence[LogRecord],
    *,
    embed: Embedder,
    max_examples: int,
    budget_tokens: int,
    count_tokens: TokenCounter,
    pool_cap: int,
    seed: int,
) -> list[list[list[dict[str, Any]]]]:
    """Per query, the most similar train examples (cosine on `embed` vectors) within the budget.

    The candidate pool is a seeded sample of at most `pool_cap` train examples, embedded once.
    """
    import numpy as np

    pool = [(e, t) for e in sorted(train, key=lambda e: e.record.id) if (t := example_turns(e.record)) is not None]
    random.Random(seed).shuffle(pool)
    pool = pool[:pool_cap]
    if not pool or not queries:
        return [[] for _ in queries]
    pool_vectors = _unit(np.asarray(embed([turns[0]["content"] for _, turns in pool]), dtype=np.float32))
    query_texts = [last_user_text(q) or "" for q in queries]
    query_vectors = _unit(np.asarray(embed(query_texts), dtype=np.float32))
    costs = [sum(count_tokens(turn_text(t)) for t in turns) for _, turns in pool]
    chosen_per_query = []
    for row in query_vectors @ pool_vectors.T:
        chosen: list[list[dict[str, Any]]] = []
        used = 0
        for index in np.argsort(-row, kind="stable"):
            if len(chosen) >= max_examples:
                break
            if used + costs[index] <= budget_tokens:
                chosen.append(pool[index][1])
                used += costs[index]
        chosen_per_query.append(chosen[::-1])  # most similar last, nearest to the question
    return chosen_per_query


def _unit(vectors: Any) -> Any:
    import numpy as np

    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
