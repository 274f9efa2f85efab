"""Spooled dedup: the same records as in-memory dedup, in the same order, loaded back from disk."""

from __future__ import annotations

from pathlib import Path

from services.datastore.pipeline.dedup import deduplicate
from services.datastore.pipeline.spool import RecordSpool, deduplicate_to_spool
from services.domain.labels import LabelParser
from services.domain.records import CallType, LogRecord
from tests.factories import chat_record_dict, tool_record_dict


def _records() -> list[LogRecord]:
    out = []
    for i in range(40):
        data = chat_record_dict(timestamp=1000 + i % 7 + (0.5 if i % 3 else 0))
        data["request"]["messages"][1]["content"] = f"Headline {i % 13}"
        data["response"]["choices"][0]["message"]["content"] = f"[[[label {i % 4}]]]" if i % 5 else "unsure"
        out.append(LogRecord.model_validate(data))
    out.append(LogRecord.model_validate(tool_record_dict(timestamp=5)))
    return out


def test_spooled_dedup_keeps_what_in_memory_dedup_keeps(tmp_path: Path) -> None:
    records = _records()
    parser = LabelParser()
    kept, report = deduplicate(records, digits="mask")
    with RecordSpool(tmp_path) as spool:
        spooled, spooled_report = deduplicate_to_spool(
            records, spool, digits="mask", label_of=lambda r: parser.parse(r.answer_text)
        )
        assert spooled_report == report and report.removed > 0
        assert [s.id for s in spooled] == [r.id for r in kept]
        assert [s.timestamp for s in spooled] == [r.timestamp for r in kept]
        for handle, record in zip(spooled, kept, strict=True):
            assert handle.canonical_json() == record.canonical_json()
            assert handle.load() == record
            assert handle.label == parser.parse(record.answer_text)
            assert handle.call_type == record.call_type
            assert handle.request == record.request  # other attributes come from the loaded record
        tool = next(s for s in spooled if s.call_type is CallType.TOOL_CALLING)
        assert tool.tool == "get_quote"
    assert list(tmp_path.iterdir()) == []  # the spool file is gone
