"""Alembic upgrades for the stores that share a database (job store, route store): one process at a time."""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy.engine import Engine


def upgrade_to_head(engine: Engine, script_location: Path, *, lock_id: int, sqlite_write_lock: bool = False) -> None:
    """Migrate to the newest schema (a no-op when up to date). Several processes (API, workers, beat, gateway) may
    open a store at once on a fresh database: on PostgreSQL an advisory lock (`lock_id`, one per store) makes them
    migrate one at a time (concurrent CREATE TABLEs fail: "already exists"); `sqlite_write_lock` takes SQLite's
    write lock for the same reason."""
    from alembic import command
    from alembic.config import Config

    logging.getLogger("alembic").setLevel(logging.WARNING)  # migration chatter is not the user's news
    config = Config()
    config.set_main_option("script_location", str(script_location))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({int(lock_id)})")
        elif connection.dialect.name == "sqlite" and sqlite_write_lock:
            connection.exec_driver_sql("BEGIN IMMEDIATE")  # the database's write lock, until commit
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
