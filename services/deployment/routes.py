"""Where each workload's traffic goes: the route table the gateway reads and the deployment
manager writes, plus an audit trail of every change (what, when, why).

Phases: `teacher` (no student), `shadow` (the student answers in the background, the teacher's
answer is returned), `canary` (the student answers `canary_percent` % of requests), `full` (the
student answers). Each route remembers the one before it, so a rollback restores it.
The tables live in the job-store database (`job_store.url`); opening the store migrates them to the
newest schema (Alembic, `migrations/` beside this module, own version table).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    insert,
    or_,
    select,
)

from services.domain.migrations import upgrade_to_head

Phase = Literal["teacher", "shadow", "canary", "full"]
MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "route_alembic_version"  # the job tables' migrations keep `alembic_version` in the same database
MIGRATION_LOCK = 7243102  # a PostgreSQL advisory lock id, the one create_all took before migrations

metadata = MetaData()
routes_table = Table(
    "routes", metadata,
    Column("workload_id", String(200), primary_key=True),
    Column("route", JSON, nullable=False),
    Column("updated_at", Float, nullable=False),
)
route_samples_table = Table(
    "route_samples", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("workload_id", String(200), nullable=False, index=True),
    Column("candidate", String(200), nullable=False),
    Column("phase", String(16), nullable=False),
    Column("agree", Boolean, nullable=False),
    Column("at", Float, nullable=False),
)
route_traffic_table = Table(
    "route_traffic", metadata,
    Column("workload_id", String(200), primary_key=True),
    Column("served_by", String(16), primary_key=True),  # teacher | student
    Column("requests", Integer, nullable=False, default=0),
    Column("input_tokens", Integer, nullable=False, default=0),
    Column("output_tokens", Integer, nullable=False, default=0),
    Column("updated_at", Float, nullable=False),
)
route_counts_table = Table(  # selective routes: requests the student was asked, and those it answered
    "route_counts", metadata,
    Column("workload_id", String(200), primary_key=True),
    Column("since", Float, primary_key=True),  # the route's `since`: counts are per route setting
    Column("asked", Integer, nullable=False, default=0),
    Column("served", Integer, nullable=False, default=0),
    Column("updated_at", Float, nullable=False),
)
limit_counts_table = Table(  # the gateway's usage-limit counts (gateway/limits.py): one row per counter and window
    "limit_counts", metadata,
    Column("scope", String(16), primary_key=True),  # key | workload
    Column("name", String(200), primary_key=True),  # the key's name or the workload id
    Column("kind", String(32), primary_key=True),  # requests_per_minute | tokens_per_day
    Column("window_start", BigInteger, primary_key=True),  # UTC epoch seconds the window began
    Column("count", BigInteger, nullable=False),
    Column("updated_at", Float, nullable=False),
)
route_events_table = Table(
    "route_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("workload_id", String(200), nullable=False, index=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("action", String(64), nullable=False),
    Column("detail", JSON, nullable=False),
)


class Route(BaseModel):
    workload_id: str
    phase: Phase = "teacher"
    candidate: str | None = None
    artifact_id: str | None = None
    artifact_path: str | None = None
    student_kind: str | None = None
    base_model: str | None = None
    canary_percent: int = 0
    job_id: str | None = None
    previous: dict[str, Any] | None = None
    cascade: dict[str, Any] | None = None  # calibration: threshold, student_share, agreement, n
    static_prompt: dict[str, Any] | None = None  # the student was trained without it: only matching prompts reach it
    prompt_tag: str | None = None  # pruned students: what replaces the static system prompt
    labels: list[str] | None = None  # classification students answer by label scoring, in answer_template
    answer_template: str | None = None
    since: float = 0.0  # when this route was set: live agreement counts from here

    @classmethod
    def teacher(cls, workload_id: str) -> Route:
        return cls(workload_id=workload_id)


class RouteStore:
    def __init__(self, url: str, *, cache_s: float = 1.0) -> None:
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine = create_engine(url, pool_pre_ping=True)
        self.upgrade()
        self.cache_s = cache_s
        self._cache: dict[str, tuple[float, Route]] = {}

    def upgrade(self) -> None:
        """Migrate the route tables to the newest schema (a no-op when up to date)."""
        upgrade_to_head(self.engine, MIGRATIONS, lock_id=MIGRATION_LOCK, sqlite_write_lock=True)

    def close(self) -> None:
        self.engine.dispose()

    def get(self, workload_id: str, *, fresh: bool = False) -> Route:
        hit = self._cache.get(workload_id)
        if hit and not fresh and time.monotonic() - hit[0] < self.cache_s:
            return hit[1]
        with self.engine.connect() as connection:
            row = connection.execute(select(routes_table.c.route).where(routes_table.c.workload_id == workload_id)).first()
        route = Route.model_validate(row[0]) if row else Route.teacher(workload_id)
        self._cache[workload_id] = (time.monotonic(), route)
        return route

    def set(self, route: Route, *, action: str, detail: dict[str, Any] | None = None) -> Route:
        route = route.model_copy(update={"since": time.time()})
        with self.engine.begin() as connection:
            connection.execute(routes_table.delete().where(routes_table.c.workload_id == route.workload_id))
            connection.execute(insert(routes_table).values(workload_id=route.workload_id,
                                                           route=route.model_dump(mode="json"), updated_at=time.time()))
            connection.execute(insert(route_events_table).values(
                workload_id=route.workload_id, at=datetime.now(UTC), action=action,
                detail={"phase": route.phase, "candidate": route.candidate, "artifact_id": route.artifact_id,
                        "job_id": route.job_id, **(detail or {})}))
        self._cache.pop(route.workload_id, None)
        return route

    def history(self, workload_id: str, limit: int = 50) -> list[dict[str, Any]]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(route_events_table).where(route_events_table.c.workload_id == workload_id)
                                      .order_by(route_events_table.c.id.desc()).limit(limit)).mappings().all()
        return [{**dict(r), "at": r["at"].isoformat()} for r in rows]

    def all(self) -> list[Route]:
        with self.engine.connect() as connection:
            return [Route.model_validate(r[0]) for r in connection.execute(select(routes_table.c.route)).all()]

    def add_sample(self, route: Route, *, agree: bool) -> None:
        """One request answered by both the student and the teacher, and whether they agreed."""
        with self.engine.begin() as connection:
            connection.execute(insert(route_samples_table).values(
                workload_id=route.workload_id, candidate=route.candidate or "", phase=route.phase, agree=agree,
                at=time.time()))

    def agreement(self, route: Route) -> tuple[int, float | None]:
        """(compared requests, share that agreed) for the route's student since the route was set."""
        query = select(route_samples_table.c.agree).where(
            route_samples_table.c.workload_id == route.workload_id,
            route_samples_table.c.candidate == (route.candidate or ""), route_samples_table.c.at >= route.since)
        with self.engine.connect() as connection:
            values = [bool(r[0]) for r in connection.execute(query).all()]
        return len(values), (sum(values) / len(values) if values else None)

    def add_traffic(self, counts: dict[tuple[str, str], tuple[int, int, int]]) -> None:
        """Add (requests, input tokens, output tokens) per (workload, served_by); the gateway flushes
        its counters here every few seconds, so the dashboard sees traffic across processes."""
        now = time.time()
        with self.engine.begin() as connection:
            for (workload_id, served_by), (requests, input_tokens, output_tokens) in counts.items():
                key = (route_traffic_table.c.workload_id == workload_id) & (route_traffic_table.c.served_by == served_by)
                updated = connection.execute(route_traffic_table.update().where(key).values(
                    requests=route_traffic_table.c.requests + requests,
                    input_tokens=route_traffic_table.c.input_tokens + input_tokens,
                    output_tokens=route_traffic_table.c.output_tokens + output_tokens, updated_at=now))
                if updated.rowcount == 0:
                    connection.execute(insert(route_traffic_table).values(
                        workload_id=workload_id, served_by=served_by, requests=requests, input_tokens=input_tokens,
                        output_tokens=output_tokens, updated_at=now))

    def add_route_counts(self, counts: dict[tuple[str, float], tuple[int, int]]) -> None:
        """Add (asked, served) per (workload, route since): how often a selective student was confident enough."""
        now = time.time()
        with self.engine.begin() as connection:
            for (workload_id, since), (asked, served) in counts.items():
                key = (route_counts_table.c.workload_id == workload_id) & (route_counts_table.c.since == since)
                updated = connection.execute(route_counts_table.update().where(key).values(
                    asked=route_counts_table.c.asked + asked, served=route_counts_table.c.served + served,
                    updated_at=now))
                if updated.rowcount == 0:
                    connection.execute(insert(route_counts_table).values(
                        workload_id=workload_id, since=since, asked=asked, served=served, updated_at=now))

    def coverage(self, route: Route) -> tuple[int, float | None]:
        """(requests the route's student was asked, share it answered) since the route was set."""
        query = select(route_counts_table.c.asked, route_counts_table.c.served).where(
            route_counts_table.c.workload_id == route.workload_id, route_counts_table.c.since == route.since)
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        if row is None or not row[0]:
            return 0, None
        return int(row[0]), int(row[1]) / int(row[0])

    def add_limit_counts(self, deltas: dict[tuple[str, str, str, int], int], *,
                         current: dict[str, int]) -> dict[tuple[str, str, str], int]:
        """Add the gateway's usage-limit counts per (scope, name, kind, window start), then return every
        counter's total in the current window of its kind (`current`: kind -> window start). An upsert,
        so gateway processes adding to the same row at once all count."""
        now = time.time()
        table = limit_counts_table
        with self.engine.begin() as connection:
            if deltas:
                upsert = _dialect_insert(connection.dialect.name)(table)
                upsert = upsert.on_conflict_do_update(
                    index_elements=[table.c.scope, table.c.name, table.c.kind, table.c.window_start],
                    set_={"count": table.c.count + upsert.excluded.count, "updated_at": upsert.excluded.updated_at})
                connection.execute(upsert, [
                    {"scope": scope, "name": name, "kind": kind, "window_start": start, "count": count,
                     "updated_at": now} for (scope, name, kind, start), count in deltas.items()])
            if not current:
                return {}
            in_window = or_(*[(table.c.kind == kind) & (table.c.window_start == start) for kind, start in current.items()])
            rows = connection.execute(select(table.c.scope, table.c.name, table.c.kind, table.c.count).where(in_window))
            return {(str(r[0]), str(r[1]), str(r[2])): int(r[3]) for r in rows}

    def drop_limit_counts(self, *, before: dict[str, int]) -> None:
        """Forget usage-limit counts of ended windows (`before`: kind -> the current window's start)."""
        table = limit_counts_table
        with self.engine.begin() as connection:
            for kind, start in before.items():
                connection.execute(table.delete().where((table.c.kind == kind) & (table.c.window_start < start)))

    def traffic(self, workload_id: str) -> dict[str, dict[str, int]]:
        """{"teacher"|"student": {"requests", "input_tokens", "output_tokens"}} since the gateway first ran."""
        out = {side: {"requests": 0, "input_tokens": 0, "output_tokens": 0} for side in ("teacher", "student")}
        with self.engine.connect() as connection:
            for row in connection.execute(select(route_traffic_table).where(
                    route_traffic_table.c.workload_id == workload_id)).mappings():
                out[row["served_by"]] = {k: int(row[k]) for k in ("requests", "input_tokens", "output_tokens")}
        return out


def _dialect_insert(dialect: str) -> Any:
    """The INSERT with ON CONFLICT of the job-store database's dialect (SQLite or PostgreSQL)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert
