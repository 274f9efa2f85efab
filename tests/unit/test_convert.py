"""The converter: labelled public datasets become valid teacher logs with [[[Label]]] answers."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from services.datastore.convert import convert
from services.datastore.validation import parse_line
from services.domain.records import LogRecord
from services.domain.settings import DEFAULT_LABEL_PATTERN
from tests.conftest import REPO

SHARED = REPO.parent / "shared" / "data"


def _records(path: Path) -> list[LogRecord]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as handle:  # type: ignore[operator]
        out = [parse_line(line.rstrip(b"\n")) for line in handle]
    assert all(isinstance(r, LogRecord) for r in out), [r for r in out if not isinstance(r, LogRecord)][:1]
    return out  # type: ignore[return-value]


def test_twitter_topic_becomes_classification_logs(tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl.gz"
    summary = convert("twitter_topic", folder=REPO / "data" / "twitter_financial_news_topic", out=out, limit=300)
    records = _records(out)
    assert summary["records"] == len(records) == 300
    labels = summary["labels"]
    assert len(labels) == 20 and labels[17] == "Personnel Change"
    first = records[0]
    system, user = first.request.messages  # type: ignore[union-attr]
    assert all(label in system.text for label in labels)
    assert user.text
    answers = [r.response.choices[0].message.text for r in records]  # type: ignore[union-attr]
    parsed = [re.fullmatch(DEFAULT_LABEL_PATTERN, a).group(1) for a in answers]  # type: ignore[union-attr]
    assert set(parsed) <= set(labels)
    # The CSV is sorted by label; the seeded shuffle spreads labels over time like live traffic.
    assert len(set(parsed)) >= 15
    in_file_order = convert("twitter_topic", folder=REPO / "data" / "twitter_financial_news_topic",
                            out=tmp_path / "ordered.jsonl", limit=3, shuffle_seed=None)
    assert in_file_order["records"] == 3
    first_in_file = _records(tmp_path / "ordered.jsonl")[0]
    assert first_in_file.request.messages[1].text.startswith("Here are Thursday's biggest analyst calls")  # type: ignore[union-attr]
    assert first_in_file.response.choices[0].message.text == "[[[Analyst Update]]]"  # type: ignore[union-attr]
    assert len({r.id for r in records}) == 300  # timestamps make every id distinct
    # Deterministic: converting again gives the same records (so re-ingesting stores nothing).
    again = tmp_path / "again.jsonl"
    convert("twitter_topic", folder=REPO / "data" / "twitter_financial_news_topic", out=again, limit=300)
    assert [r.id for r in _records(again)] == [r.id for r in records]


@pytest.mark.skipif(not (SHARED / "financial_phrasebank").is_dir(), reason="Financial PhraseBank is not present")
def test_phrasebank_splits_on_the_last_at_sign(tmp_path: Path) -> None:
    out = tmp_path / "p.jsonl"
    summary = convert("phrasebank", folder=SHARED / "financial_phrasebank", out=out)
    assert summary["records"] == 4846
    answers = {r.response.choices[0].message.text for r in _records(out)}  # type: ignore[union-attr]
    assert answers == {"[[[positive]]]", "[[[negative]]]", "[[[neutral]]]"}


@pytest.mark.skipif(not (SHARED / "financebench").is_dir(), reason="FinanceBench is not present")
def test_financebench_becomes_chat_logs_with_evidence(tmp_path: Path) -> None:
    out = tmp_path / "f.jsonl"
    convert("financebench", folder=SHARED / "financebench", out=out)
    records = _records(out)
    assert len(records) == 150
    user = records[0].request.messages[1].text  # type: ignore[union-attr]
    assert "Evidence:" in user and "Question:" in user
    assert "$1577.00" in {r.response.choices[0].message.text for r in records}  # type: ignore[union-attr]
    first_line = json.loads(out.read_text().splitlines()[0])
    assert first_line["workload_id"] == "filing_qa"
