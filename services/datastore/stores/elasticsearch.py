"""The Elasticsearch log store: the shared search logic (search.py) over the official client (8.x/9.x API)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, ClassVar

from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport import ConnectionTimeout, TransportError
from elasticsearch import ApiError, Elasticsearch, UnsupportedProductError, helpers
from pydantic import SecretStr

from services.datastore.stores.search import Failure, SearchLogStore
from services.domain.errors import ConfigError

# Request-body keys that the client takes under another keyword name.
_KEYWORDS = {"_source": "source", "from": "from_"}


class ElasticsearchLogStore(SearchLogStore):
    """LogStore over an Elasticsearch cluster."""

    product: ClassVar[str] = "Elasticsearch"

    def __init__(
        self,
        url: str,
        *,
        index: str = "flywheel-logs",
        username: str | None = None,
        password: SecretStr | None = None,
        verify_certs: bool = True,
        timeout_s: float = 30.0,
        bulk_batch_size: int = 500,
    ) -> None:
        super().__init__(url=url, index=index, timeout_s=timeout_s, bulk_batch_size=bulk_batch_size)
        auth = (username, password.get_secret_value() if password else "") if username else None
        try:
            self._client = Elasticsearch(
                url,
                basic_auth=auth,
                verify_certs=verify_certs,
                ssl_show_warn=verify_certs,
                request_timeout=timeout_s,  # the default of every call
                max_retries=2,
                retry_on_timeout=False,
            )
        except ValueError as exc:
            raise ConfigError(
                f"log_store.url = {url!r} is not a usable Elasticsearch URL: {exc}"
            ) from exc

    def _create_index(self, index: str, mappings: Mapping[str, Any]) -> None:
        self._client.indices.create(index=index, mappings=mappings)

    def _get_mappings(self, index: str) -> Mapping[str, Any]:
        response: Mapping[str, Any] = self._client.indices.get_mapping(index=index).body
        first: Mapping[str, Any] = next(iter(response.values()), {})
        return first.get("mappings", {})  # type: ignore[no-any-return]  # the client returns untyped JSON

    def _search(self, index: str, body: Mapping[str, Any]) -> Mapping[str, Any]:
        kwargs = {_KEYWORDS.get(key, key): value for key, value in body.items()}
        return self._client.search(index=index, **kwargs).body  # type: ignore[no-any-return]  # the client returns untyped JSON

    def _streaming_bulk(self, actions: Iterable[dict[str, Any]]) -> Iterator[tuple[bool, Mapping[str, Any]]]:
        return iter(
            helpers.streaming_bulk(
                self._client, actions, chunk_size=self.bulk_batch_size, raise_on_error=False, max_retries=3
            )
        )

    def _refresh(self, index: str) -> None:
        self._client.indices.refresh(index=index)

    def _delete_by_query(self, index: str, query: Mapping[str, Any]) -> Mapping[str, Any]:
        response = self._client.delete_by_query(index=index, query=query, refresh=True, conflicts="proceed")
        return response.body  # type: ignore[no-any-return]  # the client returns untyped JSON

    def _close_client(self) -> None:
        self._client.close()

    def _failure(self, exc: BaseException) -> Failure | None:
        if isinstance(exc, UnsupportedProductError):
            return Failure(
                error_type="unsupported_product",
                reason=f"{exc.message}; for an OpenSearch cluster set log_store.backend to 'opensearch'",
            )
        if isinstance(exc, ApiError):
            body = exc.body if isinstance(exc.body, Mapping) else {}
            error = body.get("error")
            reason = error.get("reason") if isinstance(error, Mapping) else (error or exc.body)
            return Failure(status=exc.meta.status, error_type=str(exc.message), reason=str(reason or ""))
        if isinstance(exc, ConnectionTimeout):
            return Failure(unreachable=True, timed_out=True, reason=f"{type(exc).__name__}: {exc.message}")
        if isinstance(exc, TransportConnectionError):  # also TlsError
            return Failure(unreachable=True, reason=f"{type(exc).__name__}: {exc.message}")
        if isinstance(exc, TransportError):
            return Failure(error_type=type(exc).__name__, reason=str(exc.message))
        return None
