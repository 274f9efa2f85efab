"""Log-store adapters behind one Protocol, chosen by `log_store.backend`."""

from __future__ import annotations

from services.datastore.stores.base import LogStore, QuarantineEntry, StreamCount
from services.datastore.stores.sqlite import SqliteLogStore
from services.domain.errors import ConfigError
from services.domain.settings import IngestSettings, LogStoreSettings

__all__ = ["LogStore", "QuarantineEntry", "StreamCount", "SqliteLogStore", "open_log_store"]


def open_log_store(settings: LogStoreSettings, ingest: IngestSettings | None = None) -> LogStore:
    """Build the configured adapter."""
    batch = (ingest or IngestSettings()).batch_size
    if settings.backend == "sqlite":
        return SqliteLogStore(settings.sqlite_path, batch_size=batch)
    # The search-backed adapters land with the datastore issue (#4); say so instead of failing obscurely.
    raise ConfigError(
        f"log_store.backend = {settings.backend!r} is not available in this version yet; "
        "use 'sqlite' (the embedded default)"
    )
