"""The route tables on PostgreSQL, opened by several processes at once.

In compose and on a cluster the gateway, the deployment worker, beat's route controller and the API
all open the route store against one fresh database at start-up. Seen in the first smoke run of the
images (scripts/smoke_images.py): two of them raced on CREATE TABLE and one died with
`relation "routes" already exists`.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from typing import Any

import pytest

from tests.contract.postgres import temporary_database


@pytest.fixture
def database() -> Iterator[str]:
    with temporary_database() as url:
        yield url


def _open_route_store(url: str, barrier: Any, results: Any) -> None:
    from services.deployment.routes import RouteStore

    barrier.wait(60)  # every process imported and connected-ready: then all open the store at once
    try:
        results.put(RouteStore(url).get("w").phase)
    except Exception as exc:  # noqa: BLE001 - reported to the test, which fails on it
        results.put(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")


def open_at_once(url: str, count: int) -> list[str]:
    """`count` processes open the route store at `url` at the same instant; what each read back (or its error)."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(count), context.Queue()
    processes = [context.Process(target=_open_route_store, args=(url, barrier, results)) for _ in range(count)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(30)
    return outcomes


def test_many_processes_open_a_fresh_route_store_at_once(database: str) -> None:
    assert open_at_once(database, 8) == ["teacher"] * 8
