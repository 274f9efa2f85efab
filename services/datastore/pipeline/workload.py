"""Workload-type detection and label parsing for classification workloads.

`LabelParser` lives in `services.domain.labels` (the evaluator and gateway parse labels too).

A label is parsed from the teacher's answer with a configurable pattern (default `[[[label]]]`,
case-insensitive, whitespace-tolerant; `[[label]]` is accepted too) and its spelling normalized
to the label set. Answers that do not parse are counted and listed, never guessed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from services.domain.labels import LabelParser
from services.domain.records import CallType, LogRecord

DetectedType = Literal["classification", "chat", "tool_calling", "embedding"]
CLASSIFICATION_MIN_PARSE_SHARE = 0.9  # of answers that parse as labels
CLASSIFICATION_MAX_LABELS = 200


@dataclass
class LabelReport:
    labels: Counter[str] = field(default_factory=Counter)
    unparsed_ids: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "labels": dict(sorted(self.labels.items())),
            "unparsed": len(self.unparsed_ids),
            "unparsed_ids": self.unparsed_ids,
        }


def parse_labels(
    records: Iterable[LogRecord], parser: LabelParser
) -> tuple[list[tuple[LogRecord, str]], LabelReport]:
    """(record, label) for records whose answer parses; the others are listed in the report."""
    report = LabelReport()
    labelled = []
    for record in records:
        label = parser.parse(record.answer_text)
        if label is None:
            report.unparsed_ids.append(record.id)
        else:
            report.labels[label] += 1
            labelled.append((record, label))
    return labelled, report


def detect_workload_type(
    records: Sequence[LogRecord], *, configured: str = "auto", parser: LabelParser | None = None
) -> DetectedType:
    """The configured type, or the one the records show: embedding > tool calling >
    classification (answers parse as labels from a bounded set) > chat."""
    if configured != "auto":
        return configured  # type: ignore[return-value]  # the settings Literal allows only DetectedType values here
    parser = parser or LabelParser()
    return workload_type_of([r.call_type for r in records], (parser.parse(r.answer_text) for r in records))


def workload_type_of(call_types: Sequence[CallType], labels: Iterable[str | None]) -> DetectedType:
    """The type that records with these call types and parsed answer labels (None: no label) show.

    For callers that keep only what they need of each record (the dataset build spools records).
    """
    if not call_types:
        return "chat"
    types = Counter(call_types)
    if types[CallType.EMBEDDING] > len(call_types) / 2:
        return "embedding"
    if types[CallType.TOOL_CALLING]:
        return "tool_calling"
    found = [label for label in labels if label is not None]
    if len(found) >= CLASSIFICATION_MIN_PARSE_SHARE * len(call_types) and len(set(found)) <= CLASSIFICATION_MAX_LABELS:
        return "classification"
    return "chat"
