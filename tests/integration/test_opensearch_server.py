"""Risky part proven early: the bundled `osmem-server` OpenSearch-API binary starts on a free
loopback port and opensearch-py bulk-writes idempotently and pages with search_after.
The datastore issue builds the OpenSearch log store on exactly these calls."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opensearchpy import OpenSearch, helpers
from osmem_server import OsmemServer

from tests.factories import make_record

INDEX = "flywheel-logs-test"


@pytest.fixture(scope="module")
def client() -> Iterator[OpenSearch]:
    server = OsmemServer.start()
    try:
        yield OpenSearch(hosts=[server.url], timeout=30)
    finally:
        server.close()


def test_bulk_create_is_idempotent_and_search_after_pages_newest_first(client: OpenSearch) -> None:
    client.indices.create(
        index=INDEX,
        body={
            "mappings": {
                "properties": {
                    "workload_id": {"type": "keyword"},
                    "client_id": {"type": "keyword"},
                    "timestamp": {"type": "date", "format": "epoch_second"},
                    "record_id": {"type": "keyword"},
                    "body": {"type": "object", "enabled": False},
                }
            }
        },
    )
    records = [make_record(i, timestamp=1_760_000_000 + i // 3) for i in range(2500)]

    def actions(items):  # type: ignore[no-untyped-def]
        for r in items:
            yield {
                "_op_type": "create",
                "_index": INDEX,
                "_id": r.id,
                "_source": {"workload_id": r.workload_id, "client_id": r.client_id, "timestamp": r.timestamp,
                            "record_id": r.id, "body": r.model_dump(mode="json")},
            }

    ok, errors = helpers.bulk(client, actions(records), raise_on_error=False, chunk_size=500)
    assert (ok, errors) == (2500, [])
    ok, errors = helpers.bulk(client, actions(records[:10]), raise_on_error=False)
    assert ok == 0 and len(errors) == 10 and all(e["create"]["status"] == 409 for e in errors)
    client.indices.refresh(index=INDEX)

    seen: list[tuple[float, str]] = []
    after = None
    while True:
        body = {
            "size": 1000,
            "query": {"bool": {"filter": [{"term": {"workload_id": "news_topic"}}]}},
            "sort": [{"timestamp": "desc"}, {"record_id": "desc"}],
        }
        if after:
            body["search_after"] = after
        hits = client.search(index=INDEX, body=body)["hits"]["hits"]
        if not hits:
            break
        seen.extend((h["_source"]["timestamp"], h["_source"]["record_id"]) for h in hits)
        after = hits[-1]["sort"]
    assert len(seen) == 2500 and len(set(seen)) == 2500
    assert seen == sorted(seen, reverse=True)
