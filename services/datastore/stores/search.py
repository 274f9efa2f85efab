"""What the OpenSearch and Elasticsearch log stores share: mappings, queries, bulk writes, paging.

The logic here is client-agnostic. `SearchLogStore` implements the LogStore Protocol on top of a
handful of primitives (create an index, search, stream a bulk request, refresh, delete by query)
that the thin adapters in `opensearch.py` and `elasticsearch.py` implement with their own client,
and `_failure`, which turns a client exception into a `Failure` so messages read the same on both.

Layout: one index of records (`log_store.index`) keyed by record id, one quarantine index
(`<index>-quarantine`) keyed by `<file sha256>:<line>`. Both are created on first use. Writes are
bulk `create`s, so a re-sent id is rejected with 409 and counted as not stored: idempotent without
a read. Exports page with `search_after` on (timestamp desc, record_id desc); no scroll contexts.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from services.datastore.stores.base import QuarantineEntry, StreamCount
from services.domain.errors import StoreError
from services.domain.records import LogRecord

T = TypeVar("T")

PAGE_SIZE = 1000
"""Hits per export/quarantine page and buckets per composite-aggregation page."""

QUARANTINE_SUFFIX = "-quarantine"

# Stored, not indexed and without doc values: kept in _source only, so size is no indexing concern.
_STORED_ONLY = {"type": "keyword", "index": False, "doc_values": False}

RECORD_MAPPINGS: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "record_id": {"type": "keyword"},
        "workload_id": {"type": "keyword"},
        "client_id": {"type": "keyword"},
        # double, not date: a date keeps milliseconds at most, and both sort and search_after must be
        # exact on fractional Unix seconds (a Python float is an IEEE double, so this round-trips).
        "timestamp": {"type": "double"},
        "call_type": {"type": "keyword"},
        # The record's canonical JSON (request and response included): returned, never searched.
        "body": _STORED_ONLY,
    },
}

QUARANTINE_MAPPINGS: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "file_sha256": {"type": "keyword"},
        "line": {"type": "long"},
        "source": {"type": "keyword", "ignore_above": 4096},
        "reason": {"type": "keyword"},
        "detail": _STORED_ONLY,
        "raw": {"type": "binary"},  # base64 in _source; binary fields are neither indexed nor doc-valued
        "size_bytes": {"type": "long"},
        "received_at": {"type": "double"},
    },
}


@dataclass(frozen=True, slots=True)
class Failure:
    """A client exception, described the same way whichever client raised it."""

    unreachable: bool = False  # no HTTP answer: connection refused, DNS, TLS, or a timeout
    timed_out: bool = False
    status: int | None = None  # the HTTP status of an error answer
    error_type: str = ""  # e.g. resource_already_exists_exception
    reason: str = ""


class SearchLogStore:
    """LogStore over a search cluster. Subclasses provide the client primitives below."""

    product: ClassVar[str] = "search cluster"

    def __init__(self, *, url: str, index: str, timeout_s: float, bulk_batch_size: int) -> None:
        self.url = url
        self.index = index
        self.quarantine_index = f"{index}{QUARANTINE_SUFFIX}"
        self.timeout_s = timeout_s
        self.bulk_batch_size = bulk_batch_size
        self._ready: set[str] = set()
        self._ready_lock = threading.Lock()

    # -- primitives the adapters implement (every call carries the client's timeout_s) -----------

    def _create_index(self, index: str, mappings: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def _get_mappings(self, index: str) -> Mapping[str, Any]:
        """The `mappings` object of `index` (or of the index an alias points at)."""
        raise NotImplementedError

    def _search(self, index: str, body: Mapping[str, Any]) -> Mapping[str, Any]:
        """Run a search given as a request body (query, sort, search_after, size, aggs, _source...)."""
        raise NotImplementedError

    def _streaming_bulk(self, actions: Iterable[dict[str, Any]]) -> Iterator[tuple[bool, Mapping[str, Any]]]:
        """helpers.streaming_bulk in chunks of bulk_batch_size, not raising on item errors."""
        raise NotImplementedError

    def _refresh(self, index: str) -> None:
        raise NotImplementedError

    def _delete_by_query(self, index: str, query: Mapping[str, Any]) -> Mapping[str, Any]:
        """Delete matching documents, proceeding on version conflicts, and refresh; the response body."""
        raise NotImplementedError

    def _close_client(self) -> None:
        raise NotImplementedError

    def _failure(self, exc: BaseException) -> Failure | None:
        """Describe a client exception; None for anything that is not the client's."""
        raise NotImplementedError

    # -- errors --------------------------------------------------------------------------------

    def _error(self, what: str, failure: Failure) -> StoreError:
        where = f"the {self.product} log store at {self.url}"
        if failure.timed_out:
            return StoreError(
                f"{what}: {where} did not answer within log_store.timeout_s = {self.timeout_s:g} s "
                f"({failure.reason}); check that the server is up and not overloaded, or raise the timeout"
            )
        if failure.unreachable:
            tls = " and, for https, log_store.verify_certs and the server certificate" if self._https else ""
            return StoreError(
                f"{what}: cannot reach {where} ({failure.reason}); check that the server is running and that "
                f"log_store.url (scheme, host and port) is right{tls}"
            )
        status = f"{failure.status} " if failure.status is not None else ""
        detail = f"{status}{failure.error_type}: {failure.reason}".strip(": ")
        if failure.status in (401, 403):
            return StoreError(
                f"{what}: {where} refused the request ({detail}); check log_store.username and "
                f"log_store.password and that the user may read and write the indices {self.index}*"
            )
        return StoreError(f"{what}: {where} answered {detail}")

    @property
    def _https(self) -> bool:
        return self.url.lower().startswith("https")

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except StoreError:
            raise
        except Exception as exc:
            failure = self._failure(exc)
            if failure is None:
                raise
            raise self._error(what, failure) from exc

    # -- indices -------------------------------------------------------------------------------

    def _ensure(self, index: str) -> None:
        """Create `index` with its mapping on first use; an existing one must have a compatible mapping."""
        if index in self._ready:
            return
        mappings = QUARANTINE_MAPPINGS if index == self.quarantine_index else RECORD_MAPPINGS
        with self._ready_lock:
            if index in self._ready:
                return
            try:
                self._create_index(index, mappings)
            except Exception as exc:
                failure = self._failure(exc)
                if failure is None:
                    raise
                if failure.error_type != "resource_already_exists_exception":
                    raise self._error(f"creating index {index!r}", failure) from exc
                # Created by an earlier run or a concurrent writer: fine if it is ours.
                self._check_mappings(index, mappings)
            self._ready.add(index)

    def _check_mappings(self, index: str, expected: Mapping[str, Any]) -> None:
        found = self._call(f"reading the mapping of index {index!r}", lambda: self._get_mappings(index))
        properties = found.get("properties", {})
        wrong = [
            f"{name} is {properties.get(name, {}).get('type') or 'missing'} (expected {spec['type']})"
            for name, spec in expected["properties"].items()
            if properties.get(name, {}).get("type") != spec["type"]
        ]
        if wrong:
            raise StoreError(
                f"index {index!r} in the {self.product} log store at {self.url} was not created by this "
                f"version: {', '.join(wrong)}; set log_store.index to a new name (or delete the index)"
            )

    # -- writes --------------------------------------------------------------------------------

    def _create_all(self, what: str, index: str, actions: Iterable[dict[str, Any]]) -> int:
        """Bulk-`create` documents; return how many were new. 409 = already stored; others raise."""
        self._ensure(index)
        created = 0

        def run() -> None:
            nonlocal created
            for ok, item in self._streaming_bulk(actions):
                result: Mapping[str, Any] = next(iter(item.values()), {})
                if ok:
                    created += 1
                elif result.get("status") != 409:
                    error = result.get("error") or {}
                    if isinstance(error, Mapping):
                        raise self._error(
                            f"{what} (document {result.get('_id')!r} in index {index!r})",
                            Failure(
                                status=result.get("status"),
                                error_type=str(error.get("type", "")),
                                reason=str(error.get("reason", "")),
                            ),
                        )
                    raise self._error(f"{what} (document {result.get('_id')!r})", Failure(reason=str(error)))

        self._call(what, run)
        if created:
            self._call(f"refreshing index {index!r}", lambda: self._refresh(index))
        return created

    def write(self, records: Iterable[LogRecord]) -> int:
        def actions() -> Iterator[dict[str, Any]]:
            for record in records:
                yield {
                    "_op_type": "create",
                    "_index": self.index,
                    "_id": record.id,
                    "_source": {
                        "record_id": record.id,
                        "workload_id": record.workload_id,
                        "client_id": record.client_id,
                        "timestamp": record.timestamp,
                        "call_type": record.call_type.value,
                        "body": record.canonical_json(),
                    },
                }

        return self._create_all("writing records", self.index, actions())

    def quarantine(self, entries: Iterable[QuarantineEntry]) -> int:
        def actions() -> Iterator[dict[str, Any]]:
            for e in entries:
                yield {
                    "_op_type": "create",
                    "_index": self.quarantine_index,
                    "_id": f"{e.file_sha256}:{e.line}",
                    "_source": {
                        "file_sha256": e.file_sha256,
                        "line": e.line,
                        "source": e.source,
                        "reason": e.reason,
                        "detail": e.detail,
                        "raw": base64.b64encode(e.raw).decode("ascii"),
                        "size_bytes": e.size_bytes,
                        "received_at": e.received_at,
                    },
                }

        return self._create_all("quarantining lines", self.quarantine_index, actions())

    def delete(self, *, workload_id: str | None = None, client_id: str | None = None) -> int:
        if workload_id is None and client_id is None:
            raise ValueError("delete needs a workload_id, a client_id or both")
        filters = _terms(workload_id=workload_id, client_id=client_id)
        self._ensure(self.index)
        what = f"deleting records from index {self.index!r}"
        response = self._call(what, lambda: self._delete_by_query(self.index, {"bool": {"filter": filters}}))
        failures = response.get("failures") or []
        if failures:
            first = failures[0] if isinstance(failures[0], Mapping) else {}
            cause = first.get("cause") or {}
            raise self._error(
                f"{what} ({len(failures)} failures; {response.get('deleted', 0)} deleted)",
                Failure(status=first.get("status"), error_type=str(cause.get("type", "")),
                        reason=str(cause.get("reason", first))),
            )
        return int(response.get("deleted", 0))

    # -- reads ---------------------------------------------------------------------------------

    def _pages(
        self, what: str, index: str, query: Mapping[str, Any], sort: list[dict[str, Any]], limit: int | None
    ) -> Iterator[Mapping[str, Any]]:
        """Hits in `sort` order, one search per page of at most PAGE_SIZE, keyset-paged with search_after."""
        self._ensure(index)
        remaining = limit
        after: list[Any] | None = None
        while remaining is None or remaining > 0:
            size = PAGE_SIZE if remaining is None else min(PAGE_SIZE, remaining)
            body: dict[str, Any] = {"query": query, "sort": sort, "size": size, "track_total_hits": False}
            if after is not None:
                body["search_after"] = after
            response = self._call(what, lambda body=body: self._search(index, body))  # type: ignore[misc]  # the default binds this iteration's body
            hits = response["hits"]["hits"]
            yield from hits
            if len(hits) < size:
                return
            after = list(hits[-1]["sort"])
            if remaining is not None:
                remaining -= len(hits)

    def export(
        self,
        *,
        workload_id: str,
        client_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> Iterator[LogRecord]:
        filters = _terms(workload_id=workload_id, client_id=client_id)
        window: dict[str, float] = {}
        if since is not None:
            window["gte"] = since
        if until is not None:
            window["lt"] = until
        if window:
            filters.append({"range": {"timestamp": window}})
        sort = [{"timestamp": {"order": "desc"}}, {"record_id": {"order": "desc"}}]
        query = {"bool": {"filter": filters}}
        for hit in self._pages(f"exporting records from index {self.index!r}", self.index, query, sort, limit):
            yield LogRecord.model_validate_json(hit["_source"]["body"])

    def quarantined(self, *, reason: str | None = None, limit: int | None = None) -> Iterator[QuarantineEntry]:
        query = {"bool": {"filter": _terms(reason=reason)}}
        sort = [{"received_at": {"order": "desc"}}, {"file_sha256": {"order": "asc"}}, {"line": {"order": "asc"}}]
        index = self.quarantine_index
        for hit in self._pages(f"reading quarantined lines from index {index!r}", index, query, sort, limit):
            s = hit["_source"]
            yield QuarantineEntry(
                file_sha256=s["file_sha256"],
                line=int(s["line"]),
                source=s["source"],
                reason=s["reason"],
                detail=s["detail"],
                raw=base64.b64decode(s["raw"]),
                size_bytes=int(s["size_bytes"]),
                received_at=s["received_at"],
            )

    def _groups(
        self, what: str, index: str, fields: list[str], metrics: Mapping[str, Any] | None = None
    ) -> Iterator[Mapping[str, Any]]:
        """Every bucket of a composite terms aggregation over `fields`, paged with after_key (no 10-bucket cap)."""
        self._ensure(index)
        after: Mapping[str, Any] | None = None
        while True:
            composite: dict[str, Any] = {
                "size": PAGE_SIZE,
                "sources": [{name: {"terms": {"field": name}}} for name in fields],
            }
            if after is not None:
                composite["after"] = after
            group: dict[str, Any] = {"composite": composite}
            if metrics:
                group["aggs"] = metrics
            body = {"size": 0, "track_total_hits": False, "aggs": {"groups": group}}
            result = self._call(what, lambda body=body: self._search(index, body))["aggregations"]["groups"]  # type: ignore[misc]  # the default binds this iteration's body
            buckets = result.get("buckets") or []
            yield from buckets
            after = result.get("after_key")
            if not buckets or after is None:
                return

    def counts(self) -> list[StreamCount]:
        metrics = {"first": {"min": {"field": "timestamp"}}, "last": {"max": {"field": "timestamp"}}}
        out = [
            StreamCount(
                workload_id=b["key"]["workload_id"],
                client_id=b["key"]["client_id"],
                records=int(b["doc_count"]),
                first_timestamp=b["first"]["value"],
                last_timestamp=b["last"]["value"],
            )
            for b in self._groups(
                f"counting records in index {self.index!r}", self.index, ["workload_id", "client_id"], metrics
            )
        ]
        return sorted(out, key=lambda c: (c.workload_id, c.client_id))

    def quarantine_counts(self) -> dict[str, int]:
        index = self.quarantine_index
        buckets = self._groups(f"counting quarantined lines in index {index!r}", index, ["reason"])
        return dict(sorted((b["key"]["reason"], int(b["doc_count"])) for b in buckets))

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        try:
            self._close_client()
        except Exception:  # closing must not mask the error that led here
            pass

    def __enter__(self) -> SearchLogStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r}, index={self.index!r})"


def _terms(**fields: str | None) -> list[dict[str, Any]]:
    """Exact-match filters for the fields that are given (None means any value)."""
    return [{"term": {name: value}} for name, value in fields.items() if value is not None]
