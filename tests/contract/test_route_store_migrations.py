"""The route tables under Alembic, on SQLite and on the local PostgreSQL.

A running install made its route tables with `metadata.create_all` and has no version table. The
first release with migrations opens that database (a `helm upgrade`): it must end at head with
every row still there, and a fresh database must get exactly the schema create_all made.
`LEGACY` below is a frozen copy of the tables as they stood before migrations: do not update it
when the schema changes (that is what new migrations are for).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    inspect,
    select,
    text,
)

from services.deployment.routes import MIGRATIONS, VERSION_TABLE, RouteStore, metadata
from tests.contract.postgres import temporary_database

LEGACY = MetaData()
Table("routes", LEGACY,
      Column("workload_id", String(200), primary_key=True),
      Column("route", JSON, nullable=False),
      Column("updated_at", Float, nullable=False))
Table("route_samples", LEGACY,
      Column("id", Integer, primary_key=True, autoincrement=True),
      Column("workload_id", String(200), nullable=False, index=True),
      Column("candidate", String(200), nullable=False),
      Column("phase", String(16), nullable=False),
      Column("agree", Boolean, nullable=False),
      Column("at", Float, nullable=False))
Table("route_traffic", LEGACY,
      Column("workload_id", String(200), primary_key=True),
      Column("served_by", String(16), primary_key=True),
      Column("requests", Integer, nullable=False, default=0),
      Column("input_tokens", Integer, nullable=False, default=0),
      Column("output_tokens", Integer, nullable=False, default=0),
      Column("updated_at", Float, nullable=False))
Table("route_counts", LEGACY,
      Column("workload_id", String(200), primary_key=True),
      Column("since", Float, primary_key=True),
      Column("asked", Integer, nullable=False, default=0),
      Column("served", Integer, nullable=False, default=0),
      Column("updated_at", Float, nullable=False))
Table("route_events", LEGACY,
      Column("id", Integer, primary_key=True, autoincrement=True),
      Column("workload_id", String(200), nullable=False, index=True),
      Column("at", DateTime(timezone=True), nullable=False),
      Column("action", String(64), nullable=False),
      Column("detail", JSON, nullable=False))

SINCE = 1_700_000_000.0
ROUTE = {"workload_id": "news", "phase": "canary", "candidate": "minilm", "artifact_id": "a" * 64,
         "student_kind": "encoder_classifier", "canary_percent": 25, "since": SINCE}
ROWS: dict[str, list[dict[str, Any]]] = {
    "routes": [{"workload_id": "news", "route": ROUTE, "updated_at": SINCE}],
    "route_samples": [{"id": 1, "workload_id": "news", "candidate": "minilm", "phase": "canary", "agree": True,
                       "at": SINCE + 1},
                      {"id": 2, "workload_id": "news", "candidate": "minilm", "phase": "canary", "agree": False,
                       "at": SINCE + 2}],
    "route_traffic": [{"workload_id": "news", "served_by": "student", "requests": 30, "input_tokens": 0,
                       "output_tokens": 0, "updated_at": SINCE},
                      {"workload_id": "news", "served_by": "teacher", "requests": 70, "input_tokens": 900,
                       "output_tokens": 120, "updated_at": SINCE}],
    "route_counts": [{"workload_id": "news", "since": SINCE, "asked": 40, "served": 30, "updated_at": SINCE}],
    "route_events": [{"id": 1, "workload_id": "news", "at": datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
                      "action": "deploy", "detail": {"phase": "canary", "reason": "job decision"}}],
}


@pytest.fixture(params=["sqlite", "postgresql"])
def new_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Makes empty databases of one kind (each call a new one), dropped after the test."""
    with ExitStack() as stack:
        made: list[str] = []

        def make() -> str:
            if request.param == "sqlite":
                made.append(f"sqlite:///{tmp_path / f'jobs-{len(made)}.sqlite'}")
            else:
                made.append(stack.enter_context(temporary_database()))
            return made[-1]

        yield make


def _head() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def _version(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return [r[0] for r in connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))]
    finally:
        engine.dispose()


def _rows(url: str) -> dict[str, list[dict[str, Any]]]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            out = {}
            for table in LEGACY.sorted_tables:
                order = [c for c in table.primary_key.columns]
                out[table.name] = [dict(r) for r in connection.execute(select(table).order_by(*order)).mappings()]
            return out
    finally:
        engine.dispose()


def _schema(url: str) -> dict[str, Any]:
    """Tables, columns (type, nullability, default), primary keys and indexes, as the database reports them."""
    engine = create_engine(url)
    try:
        inspector = inspect(engine)
        return {name: {
            "columns": [(c["name"], str(c["type"]), c["nullable"], c.get("default")) for c in inspector.get_columns(name)],
            "primary_key": inspector.get_pk_constraint(name)["constrained_columns"],
            "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]))
                              for i in inspector.get_indexes(name)),
        } for name in sorted(set(inspector.get_table_names()) - {VERSION_TABLE})}
    finally:
        engine.dispose()


def _legacy_database(url: str, tables: list[str] | None = None) -> None:
    """A database as the code before migrations left it: create_all, rows in every table, no version table."""
    engine = create_engine(url)
    try:
        chosen = [LEGACY.tables[name] for name in tables] if tables else None
        with engine.begin() as connection:
            LEGACY.create_all(connection, tables=chosen)
            for table in chosen or LEGACY.sorted_tables:  # ids come from the database, as they did
                connection.execute(table.insert(), [{k: v for k, v in row.items() if k != "id"}
                                                    for row in ROWS[table.name]])
    finally:
        engine.dispose()


def test_a_fresh_database_gets_the_schema_create_all_made(new_database: Callable[[], str]) -> None:
    migrated, legacy, declared = new_database(), new_database(), new_database()
    RouteStore(migrated).close()
    _legacy_database(legacy)
    engine = create_engine(declared)
    metadata.create_all(engine)  # the tables as routes.py declares them today
    engine.dispose()
    schema, adopted = _schema(migrated), _schema(legacy)
    assert {name: schema[name] for name in adopted} == adopted  # the tables before migrations, unchanged
    assert schema == _schema(declared)  # and the later migrations add exactly what routes.py declares
    assert _version(migrated) == [_head()]


def test_a_database_made_by_create_all_is_upgraded_with_every_row(new_database: Callable[[], str]) -> None:
    url = new_database()
    _legacy_database(url)
    before = _rows(url)
    assert all(before[name] for name in ROWS), "every table has rows to keep"

    store = RouteStore(url, cache_s=0)
    assert _version(url) == [_head()]
    assert _rows(url) == before
    route = store.get("news")
    assert (route.phase, route.candidate, route.canary_percent) == ("canary", "minilm", 25)
    assert store.agreement(route) == (2, 0.5) and store.coverage(route) == (40, 0.75)
    assert store.traffic("news")["teacher"] == {"requests": 70, "input_tokens": 900, "output_tokens": 120}
    assert [h["action"] for h in store.history("news")] == ["deploy"]

    # The adopted tables take new rows (ids continue) and reopening is a no-op.
    store.set(route.model_copy(update={"phase": "full"}), action="promote")
    store.close()
    reopened = RouteStore(url, cache_s=0)
    assert reopened.get("news").phase == "full"
    assert [h["action"] for h in reopened.history("news")] == ["promote", "deploy"]
    assert _version(url) == [_head()]
    reopened.close()


def test_a_database_missing_some_route_tables_gets_them(new_database: Callable[[], str]) -> None:
    """An install last opened by a release before `route_counts` and `route_traffic` existed."""
    url = new_database()
    _legacy_database(url, tables=["routes", "route_samples", "route_events"])
    RouteStore(url).close()
    rows = _rows(url)
    assert rows["routes"] == ROWS["routes"] and rows["route_samples"] == ROWS["route_samples"]
    assert rows["route_counts"] == [] and rows["route_traffic"] == []
    assert _version(url) == [_head()]


def test_many_processes_migrate_a_fresh_sqlite_route_store_at_once(tmp_path: Path) -> None:
    """The embedded API, worker and gateway share one SQLite file: only one of them migrates it."""
    from tests.contract.test_route_store_postgres import open_at_once

    url = f"sqlite:///{tmp_path / 'jobs.sqlite'}"
    assert open_at_once(url, 6) == ["teacher"] * 6
    assert _version(url) == [_head()]


def test_a_database_at_the_first_revision_gets_the_limit_counts(new_database: Callable[[], str]) -> None:
    """An install last opened by the release before usage limits: its rows stay, `limit_counts` comes."""
    from alembic import command

    url = new_database()
    _legacy_database(url)
    engine = create_engine(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
    engine.dispose()
    assert _version(url) == ["0001"]
    before = _rows(url)

    store = RouteStore(url)
    assert _version(url) == [_head()] and _rows(url) == before
    assert store.add_limit_counts({("key", "desk", "tokens_per_day", 86_400): 7},
                                  current={"tokens_per_day": 86_400}) == {("key", "desk", "tokens_per_day"): 7}
    store.close()


def test_limit_counts_from_several_stores_add_up(new_database: Callable[[], str]) -> None:
    """Gateway replicas add to the same rows (an upsert on each dialect) and read the sum back."""
    url = new_database()
    stores = [RouteStore(url), RouteStore(url)]
    minute, day = 1_700_000_040, 1_699_920_000
    current = {"requests_per_minute": minute, "tokens_per_day": day}
    stores[0].add_limit_counts({("workload", "news", "requests_per_minute", minute): 2,
                                ("key", "desk", "tokens_per_day", day): 900}, current=current)
    totals = stores[1].add_limit_counts({("workload", "news", "requests_per_minute", minute): 3,
                                         ("workload", "news", "requests_per_minute", minute - 60): 8}, current=current)
    assert totals == {("workload", "news", "requests_per_minute"): 5, ("key", "desk", "tokens_per_day"): 900}
    stores[0].drop_limit_counts(before=current)
    assert stores[0].add_limit_counts({}, current={"requests_per_minute": minute - 60}) == {}
    assert stores[1].add_limit_counts({}, current=current) == totals
    for store in stores:
        store.close()
