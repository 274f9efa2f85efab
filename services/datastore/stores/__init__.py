"""Log-store adapters behind one Protocol, chosen by `log_store.backend`."""

from __future__ import annotations

from pathlib import Path

from services.datastore.stores.base import LogStore, QuarantineEntry, StreamCount
from services.datastore.stores.sqlite import SqliteLogStore
from services.domain.errors import ConfigError
from services.domain.settings import IngestSettings, LogStoreSettings

__all__ = ["LogStore", "QuarantineEntry", "StreamCount", "SqliteLogStore", "open_log_store", "store_settings_from_url"]

_SEARCH_SCHEMES = ("opensearch", "elasticsearch")


def store_settings_from_url(url: str, base: LogStoreSettings) -> LogStoreSettings:
    """`--store URL`: sqlite:///path.sqlite, opensearch+http(s)://host:port, elasticsearch+http(s)://...

    Everything the URL does not say (index, credentials, timeouts) comes from the configured section.
    """
    if url.startswith("sqlite:///"):
        return base.model_copy(update={"backend": "sqlite", "sqlite_path": Path(url.removeprefix("sqlite:///"))})
    scheme, sep, rest = url.partition("+")
    if sep and scheme in _SEARCH_SCHEMES and rest.startswith(("http://", "https://")):
        return LogStoreSettings.model_validate({**base.model_dump(), "backend": scheme, "url": rest})
    raise ConfigError(
        f"--store {url!r} is not a log-store URL; use sqlite:///PATH, opensearch+http(s)://HOST:PORT "
        "or elasticsearch+http(s)://HOST:PORT"
    )


def open_log_store(settings: LogStoreSettings, ingest: IngestSettings | None = None) -> LogStore:
    """Build the configured adapter. The search clients are imported only when chosen."""
    if settings.backend == "sqlite":
        batch = (ingest or IngestSettings()).batch_size
        return SqliteLogStore(settings.sqlite_path, batch_size=batch)
    if not settings.url:  # LogStoreSettings validates this; a hand-built one may not have
        raise ConfigError(f"log_store.url is required when log_store.backend is {settings.backend!r}")
    options = {
        "index": settings.index,
        "username": settings.username,
        "password": settings.password,
        "verify_certs": settings.verify_certs,
        "timeout_s": settings.timeout_s,
        "bulk_batch_size": settings.bulk_batch_size,
    }
    if settings.backend == "opensearch":
        from services.datastore.stores.opensearch import OpenSearchLogStore

        return OpenSearchLogStore(settings.url, **options)  # type: ignore[arg-type]  # options: the stores' shared keywords, of mixed types
    from services.datastore.stores.elasticsearch import ElasticsearchLogStore

    return ElasticsearchLogStore(settings.url, **options)  # type: ignore[arg-type]  # options: the stores' shared keywords, of mixed types
