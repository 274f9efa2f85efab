"""One real flywheel history for the dashboard tests, built once per session through the real pipeline.

Two real jobs on tiny models (the real datastore, customizer, evaluator, decision and deployment
workers over the embedded queue; the second job sees fewer records, so the learning curve has two
training-set sizes), a policy lenient enough that the decision promotes a student, then the real
route operations (promote to full, a later job's canary, a rollback) and gateway traffic written
through the route store's own `add_traffic`. Nothing is invented: every number on the pages comes
from code that produces it in production.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from orchestrator.api.app import create_app
from orchestrator.jobs.store import JobStore
from orchestrator.pipeline.embedded import embedded_worker
from services.deployment.routes import RouteStore
from services.domain.settings import Settings
from tests.model_plane import classification_logs, model_plane
from tests.servers import finished_job

WORKLOAD = "news_topic"
CANDIDATES = ["tiny-clf", "tiny-lora"]
READ, WRITE, NO_READ = "dash-read-token-1", "dash-write-token-2", "dash-ingest-token-3"


@dataclass
class Site:
    settings: Settings
    store: JobStore
    jobs: list[dict[str, Any]]  # job views, oldest first
    root: Path


def with_auth(settings: Settings) -> Settings:
    return Settings.model_validate({**settings.model_dump(), "api": {"auth": {"enabled": True, "tokens": [
        {"name": "viewer", "token": READ, "scopes": ["read"]},
        {"name": "operator", "token": WRITE, "scopes": ["read", "write"]},
        {"name": "ingest-only", "token": NO_READ, "scopes": ["write"]}]}}})


def _run_job(client: TestClient, overrides: dict[str, Any]) -> dict[str, Any]:
    created = client.post("/api/jobs", json={"workload_id": WORKLOAD, "overrides": overrides})
    assert created.status_code == 201, created.text
    view = finished_job(client, created.json()["id"])
    assert view["status"] == "completed", view
    return view


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("dashboard")
    logs = classification_logs(120, workload_id=WORKLOAD)
    for i, record in enumerate(logs):  # token usage as a teacher reports it, so the decision prices the teacher
        record["response"]["usage"] = {"prompt_tokens": 40 + i % 7, "completion_tokens": 6,
                                       "total_tokens": 46 + i % 7}
    plane = model_plane(root, logs=logs, max_steps=3)
    # Lenient enough that tiny random models get promoted, so the route, its history and the
    # decision's "promote" reason are real; eval stays small (max_eval_records) to keep this quick.
    settings = Settings.model_validate({
        **plane.settings.model_dump(),
        "promotion": {"min_score": 0.0, "min_eval_size": 1, "rollout": "canary", "canary_percent": 20},
    })
    store = JobStore(settings.job_store.url)
    with embedded_worker(settings, store) as worker_app, \
            TestClient(create_app(settings, store=store, celery_app=worker_app)) as client:
        small = _run_job(client, {"candidates": CANDIDATES, "data": {"data_split.limit": 80}})
        promoted = client.post(f"/api/workloads/{WORKLOAD}/promote")
        assert promoted.status_code == 200 and promoted.json()["route"]["phase"] == "full", promoted.text
        large = _run_job(client, {"candidates": CANDIDATES})
        rolled = client.post(f"/api/workloads/{WORKLOAD}/rollback")
        assert rolled.status_code == 200 and rolled.json()["route"]["phase"] == "full", rolled.text
    routes = RouteStore(settings.job_store.url)
    routes.add_traffic({(WORKLOAD, "teacher"): (12, 2400, 96), (WORKLOAD, "student"): (88, 17600, 704)})
    routes.engine.dispose()
    yield Site(settings=settings, store=store, jobs=[small, large], root=root)
    store.close()


@pytest.fixture
def client(site: Site) -> Iterator[TestClient]:
    with TestClient(create_app(site.settings, store=site.store)) as test_client:
        yield test_client


@pytest.fixture
def auth_client(site: Site) -> Iterator[TestClient]:
    with TestClient(create_app(with_auth(site.settings), store=site.store), follow_redirects=False) as test_client:
        yield test_client
