"""The OpenSearch log store: the shared search logic (search.py) over `opensearchpy.OpenSearch`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, ClassVar

from opensearchpy import OpenSearch, helpers
from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.exceptions import ConnectionTimeout, OpenSearchException, TransportError
from pydantic import SecretStr

from services.datastore.stores.search import Failure, SearchLogStore
from services.domain.errors import ConfigError


class OpenSearchLogStore(SearchLogStore):
    """LogStore over an OpenSearch cluster (2.x/3.x)."""

    product: ClassVar[str] = "OpenSearch"

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
            self._client = OpenSearch(
                hosts=[url],
                http_auth=auth,
                verify_certs=verify_certs,
                ssl_show_warn=verify_certs,
                timeout=timeout_s,  # the default of every call
                max_retries=2,
                retry_on_timeout=False,
            )
        except (ValueError, OpenSearchException) as exc:
            raise ConfigError(f"log_store.url = {url!r} is not a usable OpenSearch URL: {exc}") from exc

    def _create_index(self, index: str, mappings: Mapping[str, Any]) -> None:
        self._client.indices.create(index=index, body={"mappings": mappings})

    def _get_mappings(self, index: str) -> Mapping[str, Any]:
        response: Mapping[str, Any] = self._client.indices.get_mapping(index=index)
        first: Mapping[str, Any] = next(iter(response.values()), {})
        return first.get("mappings", {})  # type: ignore[no-any-return]  # the client returns untyped JSON

    def _search(self, index: str, body: Mapping[str, Any]) -> Mapping[str, Any]:
        return self._client.search(index=index, body=body)  # type: ignore[no-any-return]  # the client returns untyped JSON

    def _streaming_bulk(self, actions: Iterable[dict[str, Any]]) -> Iterator[tuple[bool, Mapping[str, Any]]]:
        return helpers.streaming_bulk(  # type: ignore[no-any-return]  # the client returns untyped JSON
            self._client, actions, chunk_size=self.bulk_batch_size, raise_on_error=False, max_retries=3
        )

    def _refresh(self, index: str) -> None:
        self._client.indices.refresh(index=index)

    def _delete_by_query(self, index: str, query: Mapping[str, Any]) -> Mapping[str, Any]:
        return self._client.delete_by_query(  # type: ignore[no-any-return]  # the client returns untyped JSON
            index=index, body={"query": query}, refresh=True, conflicts="proceed"
        )

    def _close_client(self) -> None:
        self._client.close()

    def _failure(self, exc: BaseException) -> Failure | None:
        if isinstance(exc, ConnectionTimeout):
            return Failure(unreachable=True, timed_out=True, reason=_connection_reason(exc))
        if isinstance(exc, OSConnectionError):  # also SSLError
            return Failure(unreachable=True, reason=_connection_reason(exc))
        if isinstance(exc, TransportError):
            status = exc.status_code if isinstance(exc.status_code, int) else None
            info = exc.info if isinstance(exc.info, Mapping) else {}
            error = info.get("error")
            reason = error.get("reason") if isinstance(error, Mapping) else (error or exc.info)
            return Failure(status=status, error_type=str(exc.error or ""), reason=str(reason or ""))
        if isinstance(exc, OpenSearchException):  # ImproperlyConfigured, SerializationError, ...
            return Failure(error_type=type(exc).__name__, reason=str(exc))
        return None


def _connection_reason(exc: TransportError) -> str:
    cause = exc.info if isinstance(exc.info, BaseException) else None
    return f"{type(cause or exc).__name__}: {exc.error}"
