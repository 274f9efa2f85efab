"""Dedup on normalized user content, newest kept, digit policy."""

from __future__ import annotations

import pytest

from services.datastore.pipeline.dedup import deduplicate, normalize
from services.domain.records import LogRecord
from tests.factories import chat_record_dict


def _record(user: str, ts: int, system: str = "Classify.", workload: str = "news_topic") -> LogRecord:
    data = chat_record_dict(timestamp=ts, workload_id=workload)
    data["request"]["messages"][0]["content"] = system
    data["request"]["messages"][1]["content"] = user
    return LogRecord.model_validate(data)


@pytest.mark.parametrize(
    ("text", "digits", "expected"),
    [
        ("  Fed   HOLDS\trates ", "keep", "fed holds rates"),
        ("Q3 EPS 1.52", "mask", "q0 eps 0.0"),
        ("Q3 EPS 1.52", "drop", "q eps ."),
        ("Straße", "keep", "strasse"),
    ],
)
def test_normalize(text: str, digits: str, expected: str) -> None:
    assert normalize(text, digits=digits) == expected  # type: ignore[arg-type]


def test_keeps_the_newest_and_ignores_case_whitespace_and_system_prompt() -> None:
    old = _record("Fed holds rates", 100)
    new = _record("  fed HOLDS rates ", 200, system="Revised prompt.")
    other = _record("ECB cuts rates", 150)
    other_workload = _record("Fed holds rates", 50, workload="sentiment")
    kept, report = deduplicate([old, other, new, other_workload])
    assert kept == [new, other, other_workload]
    assert report.to_json() == {"kept": 3, "removed": 1}


def test_digit_policy_decides_whether_numbers_distinguish() -> None:
    a, b = _record("Apple Q3 revenue 81.8bn", 1), _record("Apple Q3 revenue 83.0bn", 2)
    assert deduplicate([a, b], digits="keep")[1].removed == 0
    kept, report = deduplicate([a, b], digits="mask")
    assert (kept, report.removed) == ([b], 1)
