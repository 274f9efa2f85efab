"""Property: ingestion never raises on arbitrary bytes, and every line is accounted for."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.datastore.ingest import ingest_files
from services.datastore.stores.sqlite import SqliteLogStore
from tests.factories import chat_record_dict

VALID_LINE = json.dumps(chat_record_dict()).encode()

line = st.one_of(
    st.binary(max_size=300),
    st.just(VALID_LINE),
    st.builds(lambda t: json.dumps(chat_record_dict(timestamp=t)).encode(), st.integers(0, 10**12)),
    st.builds(lambda v: json.dumps(v).encode(), st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
        max_leaves=12,
    )),
    st.builds(lambda b: VALID_LINE[:b], st.integers(0, len(VALID_LINE))),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(line, max_size=12), separator=st.sampled_from([b"\n", b"\r\n"]))
def test_ingestion_never_raises_and_accounts_for_every_line(lines: list[bytes], separator: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.jsonl"
        content = separator.join(lines)
        path.write_bytes(content)
        with SqliteLogStore(Path(tmp) / "logs.sqlite") as store:
            summary = ingest_files([path], store=store, max_record_bytes=1024, batch_size=5)
            # Content that starts with the gzip magic is read as gzip; if it is not, the file is
            # reported unreadable (exit status 1), never silently half-read.
            assert summary.errors == [] or content.startswith(b"\x1f\x8b")
            assert summary.read == summary.stored + summary.quarantined + summary.duplicates
            assert sum(c.records for c in store.counts()) == summary.stored
            assert sum(store.quarantine_counts().values()) == summary.quarantined
