"""The orchestrator API through the real app (FastAPI TestClient over the ASGI app): typed errors,
request ids, auth scopes, log ingestion, a whole job through the embedded worker, delete with
cleanup, client data erasure with lineage, readiness and metrics."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from orchestrator.api.app import create_app
from orchestrator.jobs.store import JobStore
from orchestrator.jobs.view import event_view, job_summary, job_view
from orchestrator.pipeline.embedded import embedded_worker
from services.domain.artifacts import find_artifacts
from services.domain.settings import Settings
from tests.model_plane import classification_logs, model_plane

READ, WRITE = "read-token-123", "write-token-456"


def with_auth(settings: Settings) -> Settings:
    return Settings.model_validate({**settings.model_dump(), "api": {"auth": {"enabled": True, "tokens": [
        {"name": "viewer", "token": READ, "scopes": ["read"]},
        {"name": "operator", "token": WRITE, "scopes": ["read", "write"]}]}}})


@pytest.fixture
def plane(tmp_path: Path):
    return model_plane(tmp_path, records=120, max_steps=3)


def assert_error(response: Any, status: int, type_: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == type_ and error["message"] and error["request_id"] == response.headers["x-request-id"]
    return error


def test_auth_scopes_typed_errors_and_request_ids(plane) -> None:
    with TestClient(create_app(with_auth(plane.settings))) as client:
        assert_error(client.get("/api/jobs"), 401, "unauthorized")
        assert_error(client.get("/api/jobs", headers={"Authorization": "Bearer nope"}), 401, "unauthorized")
        viewer, operator = {"Authorization": f"Bearer {READ}"}, {"Authorization": f"Bearer {WRITE}"}
        listed = client.get("/api/jobs", headers={**viewer, "X-Request-ID": "req-42"})
        assert listed.status_code == 200 and listed.json()["total"] == 0
        assert listed.headers["x-request-id"] == "req-42"
        error = assert_error(client.post("/api/jobs", json={"workload_id": "news_topic"}, headers=viewer),
                             403, "forbidden")
        assert "write" in error["message"]
        assert_error(client.get("/api/jobs/does-not-exist", headers=viewer), 404, "not_found")
        assert_error(client.get("/api/jobs?status=sleeping", headers=viewer), 422, "invalid_request")
        error = assert_error(client.post("/api/jobs", headers=operator, json={
            "workload_id": "news_topic", "overrides": {"training": {"learning_rate": -1}}}), 422, "invalid_request")
        assert "learning_rate" in error["message"]
        assert_error(client.post("/api/jobs", headers=operator, json={"workload_id": "bad id!"}), 422, "invalid_request")
        assert client.get("/api/health").json() == {"status": "ok"}, "probes need no token"


def test_log_ingestion_quarantines_and_counts(plane) -> None:
    settings = plane.settings.model_copy(update={"api": plane.settings.api.model_copy(update={"max_request_bytes": 4096})})
    good = classification_logs(3, seed=5, workload_id="api_topic")
    body = "\n".join([json.dumps(good[0]), json.dumps(good[1]), "{not json", json.dumps(good[0])]) + "\n"
    with TestClient(create_app(settings)) as client:
        summary = client.post("/api/logs", content=body.encode()).json()
        assert (summary["read"], summary["stored"], summary["quarantined"], summary["duplicates"]) == (4, 2, 1, 1)
        assert summary["reasons"] == {"invalid_json": 1}
        zipped = client.post("/api/logs", content=gzip.compress(json.dumps(good[2]).encode()),
                             headers={"Content-Encoding": "gzip"}).json()
        assert zipped["stored"] == 1
        assert_error(client.post("/api/logs", content=b"\x1f\x8b broken", headers={"Content-Encoding": "gzip"}),
                     400, "bad_request")
        assert_error(client.post("/api/logs", content=b"x" * 5000), 413, "payload_too_large")
        workloads = {w["workload_id"]: w for w in client.get("/api/workloads").json()["workloads"]}
        assert workloads["api_topic"]["records"] == 3 and workloads["api_topic"]["route"]["phase"] == "teacher"
        metrics = client.get("/metrics").text
        assert 'flywheel_api_log_records_total{outcome="stored"} 3.0' in metrics


def wait_job(client: TestClient, job_id: str, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = client.get(f"/api/jobs/{job_id}").json()
        if view["status"] in ("completed", "failed", "cancelled"):
            return view
        time.sleep(0.25)
    raise AssertionError(f"job did not finish: {view}")


def test_job_end_to_end_then_delete_and_erase(plane) -> None:
    store = JobStore(plane.settings.job_store.url)
    with embedded_worker(plane.settings, store) as worker_app, \
            TestClient(create_app(plane.settings, store=store, celery_app=worker_app)) as client:
        created = client.post("/api/jobs", json={"workload_id": "news_topic",
                                                 "overrides": {"candidates": ["tiny-lora", "tiny-clf"]}})
        assert created.status_code == 201 and created.json()["status"] == "queued"
        job_id = created.json()["id"]
        assert created.headers["location"] == f"/api/jobs/{job_id}"
        view = wait_job(client, job_id)
        assert client.get("/api/ready").json()["checks"]["queue"]["ok"] is True
    assert view["status"] == "completed", view
    by_name = {c["name"]: c for c in view["candidates"]}
    assert set(by_name) == {"tiny-lora", "tiny-clf"}
    assert 0 <= by_name["tiny-lora"]["evaluations"]["customized"]["f1_vs_teacher"] <= 1
    assert len(by_name["tiny-lora"]["evaluations"]["customized"]["f1_vs_teacher_ci"]) == 2
    assert view["decision"]["status"] == "keep_teacher" and len(view["decision"]["verdicts"]) == 2
    artifacts = find_artifacts(Path(plane.settings.artifacts.root))
    assert {a.candidate for a in artifacts} == {"tiny-lora", "tiny-clf"}

    with TestClient(create_app(plane.settings, store=store)) as client:
        # The response models describe the JSON the views build; they neither drop nor add a field.
        assert client.get(f"/api/jobs/{job_id}").json() == json.loads(json.dumps(job_view(store.get_job(job_id))))
        listed = client.get("/api/jobs", params={"status": "completed"}).json()
        assert listed["total"] == 1 and listed["jobs"] == json.loads(json.dumps([job_summary(store.get_job(job_id))]))
        assert client.get(f"/api/jobs/{job_id}/events").json()["events"] == json.loads(json.dumps(
            [event_view(e) for e in store.events(job_id=job_id)]))
        assert client.post(f"/api/jobs/{job_id}/cancel").json()["status"] == "completed", "a finished job stays so"
        assert_error(client.post(f"/api/jobs/{job_id}/approve"), 409, "conflict")
        # Erase the only client: its logs, the dataset and both students go; an audit event says so.
        erased = client.delete("/api/clients/desk-1/data").json()
        assert erased["logs_deleted"] == 120 and view["dataset_id"] in erased["datasets_erased"]
        assert {s["candidate"] for s in erased["students_retired"]} == {"tiny-lora", "tiny-clf"}
        assert find_artifacts(Path(plane.settings.artifacts.root)) == []
        kinds = [e["kind"] for e in client.get("/api/events").json()["events"]]
        assert kinds[0] == "client.data_erased" and "job.created" in kinds
        deleted = client.delete(f"/api/jobs/{job_id}").json()
        assert deleted["deleted"] is True and "blobs" not in deleted, "blobs only when the job's dataset went too"
        assert_error(client.get(f"/api/jobs/{job_id}"), 404, "not_found")
        metrics = client.get("/metrics").text
        assert 'flywheel_jobs{status="completed"} 0' in metrics


def test_delete_removes_what_the_job_created_but_not_a_running_job(plane) -> None:
    store = JobStore(plane.settings.job_store.url)
    with embedded_worker(plane.settings, store) as worker_app, \
            TestClient(create_app(plane.settings, store=store, celery_app=worker_app)) as client:
        job_id = client.post("/api/jobs", json={"workload_id": "news_topic",
                                                "overrides": {"candidates": ["tiny-clf"]}}).json()["id"]
        error = assert_error(client.delete(f"/api/jobs/{job_id}"), 409, "conflict")
        assert "cancel it first" in error["message"]
        view = wait_job(client, job_id)
        artifact_path = Path(view["candidates"][0]["training"]["path"])
        assert artifact_path.is_dir()
        deleted = client.delete(f"/api/jobs/{job_id}").json()
    assert deleted["artifacts"] == [view["candidates"][0]["training"]["artifact_id"]]
    assert deleted["datasets"] == [view["dataset_id"]] and not artifact_path.exists()
    assert "blobs" in deleted, "the dataset went, so the unused blobs were collected"
    assert [e.kind for e in store.events(job_id=job_id)][0] == "job.deleted", "the audit trail outlives the job"


def test_readiness_is_503_with_the_failing_check(plane) -> None:
    settings = plane.settings.model_copy(update={"tracking": plane.settings.tracking.model_copy(
        update={"enabled": True, "tracking_uri": "http://127.0.0.1:9"})})  # nothing listens on the discard port
    with TestClient(create_app(settings)) as client:
        response = client.get("/api/ready")
    assert response.status_code == 503 and response.json()["status"] == "not_ready"
    checks = response.json()["checks"]
    assert checks["tracking"]["ok"] is False and "ConnectError" in checks["tracking"]["error"]
    assert checks["job_store"] == {"ok": True, "ms": checks["job_store"]["ms"]}, "no detail, no error when none"
    assert checks["queue"]["ok"] is True and checks["queue"]["detail"] == settings.queue.backend
