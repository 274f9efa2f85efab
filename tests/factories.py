"""Small factories for records and log lines used across the test suite."""

from __future__ import annotations

import json
from typing import Any

from services.domain.decisions import CandidateVerdict, DecisionStatus, PromotionDecision
from services.domain.records import LogRecord


def chat_record_dict(**overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "workload_id": "news_topic",
        "client_id": "desk-7",
        "timestamp": 1_760_845_128,
        "request": {
            "model": "meta/llama-3.3-70b-instruct",
            "messages": [
                {"role": "system", "content": "Classify the headline."},
                {"role": "user", "content": "Fed holds rates steady"},
            ],
        },
        "response": {
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "[[[Fed | Central Banks]]]"}}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 8, "total_tokens": 28},
        },
    }
    record.update(overrides)
    return record


def tool_record_dict(**overrides: Any) -> dict[str, Any]:
    record = chat_record_dict(workload_id="quotes")
    record["request"]["tools"] = [
        {"type": "function", "function": {"name": "get_quote", "parameters": {"type": "object"}}}
    ]
    record["response"]["choices"][0]["message"] = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_quote", "arguments": '{"ticker": "AAPL"}'}}
        ],
    }
    record.update(overrides)
    return record


def embedding_record_dict(**overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "workload_id": "filing_search",
        "client_id": "research",
        "timestamp": 1_760_845_200,
        "request": {"model": "text-embedding-3-large", "input": ["net revenue", "capex"]},
        "response": {"data": [{"index": 0, "embedding": [0.1, 0.2]}, {"index": 1, "embedding": [0.3, 0.4]}]},
    }
    record.update(overrides)
    return record


def make_record(i: int = 0, *, workload_id: str = "news_topic", client_id: str = "desk-7", timestamp: float | None = None) -> LogRecord:
    data = chat_record_dict(
        workload_id=workload_id,
        client_id=client_id,
        timestamp=timestamp if timestamp is not None else 1_760_000_000 + i,
    )
    data["request"]["messages"][1]["content"] = f"headline number {i}"
    return LogRecord.model_validate(data)


def jsonl(*records: dict[str, Any] | str | bytes) -> bytes:
    out = b""
    for item in records:
        if isinstance(item, dict):
            out += json.dumps(item).encode() + b"\n"
        elif isinstance(item, str):
            out += item.encode() + b"\n"
        else:
            out += item + b"\n"
    return out


def promotion_decision(chosen: str | None, artifact_id: str | None = None, **fields: Any) -> PromotionDecision:
    """A decision as `decide` makes one, for tests that start at the deploy: `chosen` qualified, rollout direct."""
    verdicts = [CandidateVerdict(candidate=chosen, qualified=True, reasons=[], artifact_id=artifact_id)] if chosen else []
    values: dict[str, Any] = {"workload_id": "news_topic", "chosen": chosen, "artifact_id": artifact_id,
                              "reason": f"promote {chosen}" if chosen else "keep the teacher", "rollout": "direct",
                              "requires_approval": False, "verdicts": verdicts, "policy": {}, **fields}
    values.setdefault("status", DecisionStatus.initial(chosen=chosen, requires_approval=values["requires_approval"]))
    return PromotionDecision.model_validate(values)
