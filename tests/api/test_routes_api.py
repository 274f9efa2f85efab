"""Operators move routes through the API: promote (shadow -> canary -> full), rollback, history."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from orchestrator.api.app import create_app
from services.deployment.routes import Route, RouteStore
from services.domain.jobs import JobStatus
from services.domain.settings import Settings
from tests.factories import promotion_decision


def test_promote_and_rollback_through_the_api(tmp_path: Path) -> None:
    settings = Settings.model_validate({
        "log_store": {"sqlite_path": str(tmp_path / "logs.sqlite")},
        "job_store": {"url": f"sqlite:///{tmp_path / 'jobs.sqlite'}"},
        "queue": {"embedded_dir": str(tmp_path / "queue")},
        "promotion": {"canary_percent": 25}, "tracking": {"enabled": False}})
    routes = RouteStore(settings.job_store.url)
    with TestClient(create_app(settings)) as client:
        refused = client.post("/api/workloads/news_topic/promote")
        assert refused.status_code == 422 and "nothing to promote" in refused.json()["error"]["message"]
        routes.set(Route(workload_id="news_topic", phase="shadow", candidate="minilm-classifier", artifact_id="a" * 64,
                         student_kind="encoder_classifier"), action="deploy", detail={"reason": "job decision"})
        canary = client.post("/api/workloads/news_topic/promote").json()["route"]
        assert (canary["phase"], canary["canary_percent"]) == ("canary", 25)
        full = client.post("/api/workloads/news_topic/promote").json()
        assert full["route"]["phase"] == "full"
        assert [h["action"] for h in full["history"]] == ["promote", "promote", "deploy"]
        back = client.post("/api/workloads/news_topic/rollback").json()
        assert back["route"]["phase"] == "teacher" and back["history"][0]["detail"]["reason"] == "operator anonymous"
        listed = {w["workload_id"]: w for w in client.get("/api/workloads").json()["workloads"]}
        assert listed["news_topic"]["route"]["phase"] == "teacher"
        assert listed["news_topic"]["traffic"]["teacher_cost_avoided_usd"] is None, "no decision priced the teacher"

        # Gateway replicas add their counts; the estimate uses the deciding job's teacher cost per request.
        routes.add_traffic({("news_topic", "student"): (300, 0, 0), ("news_topic", "teacher"): (100, 2000, 400)})
        routes.add_traffic({("news_topic", "student"): (200, 0, 0)})
        job = client.app.state.store.create_job(workload_id="news_topic", client_id=None, overrides={}, stages=[])
        client.app.state.store.set_job(job.id, status=JobStatus.COMPLETED, decision=promotion_decision(
            "minilm-classifier", "a" * 64, teacher_cost_per_1k_requests=0.02))
        routes.set(Route(workload_id="news_topic", phase="full", candidate="minilm-classifier", artifact_id="a" * 64,
                         student_kind="encoder_classifier", job_id=job.id), action="deploy")
        traffic = {w["workload_id"]: w for w in client.get("/api/workloads").json()["workloads"]}["news_topic"]["traffic"]
        assert traffic["student"]["requests"] == 500 and traffic["teacher"] == {
            "requests": 100, "input_tokens": 2000, "output_tokens": 400}
        assert traffic["teacher_cost_avoided_usd"] == 0.01  # 500 requests at 0.02 per 1k
