"""Label parsing and workload-type detection."""

from __future__ import annotations

import pytest

from services.datastore.pipeline.workload import LabelParser, detect_workload_type, parse_labels
from services.domain.records import LogRecord
from tests.factories import chat_record_dict, embedding_record_dict, tool_record_dict

LABELS = ["Fed | Central Banks", "Earnings", "M&A | Investments"]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("[[[Earnings]]]", "Earnings"),
        ("[[[ earnings ]]]", "Earnings"),
        ("The topic is [[[fed |  central banks]]].", "Fed | Central Banks"),
        ("[[M&A | Investments]]", "M&A | Investments"),
        ("[[[Sports]]]", None),  # not in the label set: never guessed
        ("Earnings", None),  # no brackets
        ("[[[]]]", None),
    ],
)
def test_label_parsing(answer: str, expected: str | None) -> None:
    assert LabelParser(labels=LABELS).parse(answer) == expected


def test_custom_pattern() -> None:
    assert LabelParser(r"Label:\s*(\w+)").parse("label: BUY") == "BUY"


def _chat(answer: str, ts: int) -> LogRecord:
    data = chat_record_dict(timestamp=ts)
    data["response"]["choices"][0]["message"]["content"] = answer
    return LogRecord.model_validate(data)


def test_parse_labels_reports_unparsed_ids() -> None:
    records = [_chat("[[[Earnings]]]", 1), _chat("I think it's earnings", 2), _chat("[[[Earnings]]]", 3)]
    labelled, report = parse_labels(records, LabelParser(labels=LABELS))
    assert [label for _, label in labelled] == ["Earnings", "Earnings"]
    assert report.to_json()["unparsed_ids"] == [records[1].id]


def test_detection() -> None:
    classification = [_chat(f"[[[{LABELS[i % 3]}]]]", i) for i in range(20)]
    chat = [_chat(f"A long free-text answer number {i}.", i) for i in range(20)]
    assert detect_workload_type(classification) == "classification"
    assert detect_workload_type(chat) == "chat"
    assert detect_workload_type([LogRecord.model_validate(tool_record_dict())]) == "tool_calling"
    assert detect_workload_type([LogRecord.model_validate(embedding_record_dict())]) == "embedding"
    assert detect_workload_type(chat, configured="classification") == "classification"
