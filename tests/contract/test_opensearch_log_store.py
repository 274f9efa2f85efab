"""The LogStore contract on the OpenSearch adapter, against the bundled in-memory `osmem-server`,
plus what only a server-backed store can get wrong: first use, a server that is down."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from opensearchpy import OpenSearch
from osmem_server import OsmemServer

from services.datastore.stores import open_log_store
from services.datastore.stores.opensearch import OpenSearchLogStore
from services.domain.errors import StoreError
from services.domain.settings import LogStoreSettings
from tests.contract.log_store_contract import LogStoreContract
from tests.factories import make_record


@pytest.fixture(scope="module")
def server() -> Iterator[OsmemServer]:
    server = OsmemServer.start()
    try:
        yield server
    finally:
        server.close()


def _index() -> str:
    return f"flywheel-logs-{uuid.uuid4().hex[:12]}"


class TestOpenSearchLogStore(LogStoreContract):
    @pytest.fixture
    def store(self, server: OsmemServer) -> Iterator[OpenSearchLogStore]:
        # A small bulk batch so the contract's writes cross batch boundaries.
        with OpenSearchLogStore(server.url, index=_index(), timeout_s=30, bulk_batch_size=100) as store:
            yield store


def test_open_log_store_builds_the_opensearch_adapter(server: OsmemServer) -> None:
    settings = LogStoreSettings(backend="opensearch", url=server.url, index=_index(), bulk_batch_size=7)
    store = open_log_store(settings)
    try:
        assert isinstance(store, OpenSearchLogStore)
        assert store.write([make_record(i) for i in range(20)]) == 20
        assert store.quarantine_counts() == {}
    finally:
        store.close()


def test_indices_are_created_on_first_use_with_the_mapping_and_reused(server: OsmemServer) -> None:
    index = _index()
    with OpenSearchLogStore(server.url, index=index) as store:
        assert store.counts() == []  # reading an empty cluster creates the index instead of failing
        assert store.quarantine_counts() == {}
        store.write([make_record(1)])
    client = OpenSearch(hosts=[server.url], timeout=10)
    properties = client.indices.get_mapping(index=index)[index]["mappings"]["properties"]
    assert properties["timestamp"]["type"] == "double"
    assert properties["body"]["index"] is False
    assert client.indices.exists(index=f"{index}-quarantine")
    with OpenSearchLogStore(server.url, index=index) as again:  # "already exists" is fine
        assert again.write([make_record(1), make_record(2)]) == 1


def test_an_index_with_a_foreign_mapping_is_refused_clearly(server: OsmemServer) -> None:
    index = _index()
    OpenSearch(hosts=[server.url], timeout=10).indices.create(
        index=index, body={"mappings": {"properties": {"timestamp": {"type": "keyword"}}}}
    )
    with OpenSearchLogStore(server.url, index=index) as store, pytest.raises(StoreError, match="timestamp"):
        store.write([make_record(1)])


def test_counts_cover_many_groups_and_fractional_timestamps(server: OsmemServer) -> None:
    with OpenSearchLogStore(server.url, index=_index(), bulk_batch_size=50) as store:
        records = [
            make_record(i, workload_id=f"w{i % 25:02d}", client_id=f"c{i % 3}", timestamp=1_760_000_000.25 + i)
            for i in range(150)
        ]
        assert store.write(records) == 150
        counts = store.counts()
        assert len(counts) == 75
        assert [(c.workload_id, c.client_id) for c in counts] == sorted((c.workload_id, c.client_id) for c in counts)
        assert sum(c.records for c in counts) == 150
        first = counts[0]
        assert (first.workload_id, first.client_id, first.first_timestamp) == ("w00", "c0", 1_760_000_000.25)
        window = list(store.export(workload_id="w00", since=1_760_000_000.25, until=1_760_000_075.25))
        assert [r.timestamp for r in window] == [1_760_000_050.25, 1_760_000_025.25, 1_760_000_000.25]


def test_a_server_that_is_down_is_a_clear_store_error_quickly() -> None:
    url = "http://127.0.0.1:1"
    started = time.monotonic()
    with OpenSearchLogStore(url, timeout_s=2) as store, pytest.raises(StoreError) as caught:
        store.write([make_record(1)])
    message = str(caught.value)
    assert url in message and "cannot reach" in message and "log_store.url" in message
    assert time.monotonic() - started < 10
    with OpenSearchLogStore(url, timeout_s=2) as store, pytest.raises(StoreError, match="cannot reach"):
        list(store.export(workload_id="news_topic"))
