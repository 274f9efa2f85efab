"""The LogStore contract on the Elasticsearch adapter.

It needs a real Elasticsearch server (no one runs here), so it runs only when
FLYWHEEL_TEST_ELASTICSEARCH_URL is set, e.g. http://127.0.0.1:9200 (a throwaway cluster: every
test creates its own index and leaves it).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from services.datastore.stores.elasticsearch import ElasticsearchLogStore
from services.domain.errors import StoreError
from tests.contract.log_store_contract import LogStoreContract
from tests.factories import make_record

URL = os.environ.get("FLYWHEEL_TEST_ELASTICSEARCH_URL")

pytestmark = pytest.mark.skipif(
    not URL, reason="needs an Elasticsearch server: set FLYWHEEL_TEST_ELASTICSEARCH_URL (e.g. http://127.0.0.1:9200)"
)


def _store(**options: object) -> ElasticsearchLogStore:
    assert URL
    return ElasticsearchLogStore(URL, index=f"flywheel-logs-{uuid.uuid4().hex[:12]}", **options)  # type: ignore[arg-type]


class TestElasticsearchLogStore(LogStoreContract):
    @pytest.fixture
    def store(self) -> Iterator[ElasticsearchLogStore]:
        with _store(timeout_s=30, bulk_batch_size=100) as store:
            yield store


def test_counts_cover_many_groups() -> None:
    with _store(bulk_batch_size=50) as store:
        store.write([make_record(i, workload_id=f"w{i % 25:02d}", client_id=f"c{i % 3}") for i in range(150)])
        counts = store.counts()
        assert len(counts) == 75 and sum(c.records for c in counts) == 150


def test_a_server_that_is_down_is_a_clear_store_error() -> None:
    with ElasticsearchLogStore("http://127.0.0.1:1", timeout_s=2) as store, pytest.raises(StoreError) as caught:
        store.counts()
    assert "http://127.0.0.1:1" in str(caught.value) and "cannot reach" in str(caught.value)
