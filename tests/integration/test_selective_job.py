"""A whole job ends in a selective promotion and its deploy; a gateway *process* (`flywheel serve gateway`)
then answers with the student only at or above the decided threshold, through the official `openai`
client, and the route controller rolls the route back when live agreement falls."""

from __future__ import annotations

import time
from pathlib import Path

import openai
import yaml
from fastapi.testclient import TestClient

from orchestrator.api.app import create_app
from orchestrator.jobs.store import JobStore
from orchestrator.pipeline.embedded import embedded_worker
from services.deployment.rollout import control_routes
from services.deployment.routes import RouteStore
from services.domain.settings import Settings
from tests.gateway.fake_teacher import fake_teacher
from tests.model_plane import SYSTEM, model_plane
from tests.servers import finished_job, serve, start_gateway_process

POLICY = {"min_score": 0.999, "min_eval_size": 10, "min_coverage": 0.2, "min_agreement": 0.5, "rollout": "direct",
          "live_min_requests": 6, "monitor_share": 1.0}


def test_a_selective_job_deploys_and_a_gateway_process_routes_by_confidence(tmp_path: Path) -> None:
    # The encoder head alone: with the TF-IDF half, keyword topics are learnt perfectly and promoted in full.
    plane = model_plane(tmp_path, records=200, finetune="head", lexical_mix=0.0)
    settings = Settings.model_validate({**plane.settings.model_dump(), "promotion": POLICY})
    store = JobStore(settings.job_store.url)
    with embedded_worker(settings, store) as worker_app, \
            TestClient(create_app(settings, store=store, celery_app=worker_app)) as client:
        created = client.post("/api/jobs", json={"workload_id": "news_topic", "overrides": {"candidates": ["tiny-clf"]}})
        assert created.status_code == 201, created.text
        view = finished_job(client, created.json()["id"], timeout=300)
    assert view["status"] == "completed", view
    decision = view["decision"]
    assert decision["chosen"] == "tiny-clf" and decision["mode"] == "selective", decision["reason"]
    routes = RouteStore(settings.job_store.url)
    route = routes.get("news_topic", fresh=True)
    assert route.phase == "full" and route.cascade is not None
    assert route.cascade["threshold"] == decision["cascade"]["threshold"]

    with serve(fake_teacher()) as teacher_url:
        config = tmp_path / "gateway.yaml"
        config.write_text(yaml.safe_dump({
            **settings.model_dump(mode="json", exclude={"workloads"}),
            "teacher": {"model": "big-teacher", "base_url": f"{teacher_url}/v1"},
            "gateway": {"spool_path": str(tmp_path / "spool.jsonl")}}))
        gateway, base = start_gateway_process(config)
        try:
            client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)

            def ask(text: str) -> tuple[str, str]:
                raw = client.chat.completions.with_raw_response.create(model="news_topic", messages=[
                    {"role": "system", "content": SYSTEM}, {"role": "user", "content": text}])
                return raw.headers["x-flywheel-served-by"], raw.parse().choices[0].message.content or ""

            answered = [ask(f"Acme dividend increase {i}") for i in range(10)]
            assert all(text.startswith("[[[") for _, text in answered)
            # The decided threshold lets the student answer what it is sure of; the teacher answers the rest.
            served = [by for by, _ in answered]
            assert set(served) <= {"student", "teacher"}
            if "student" in served:  # monitored: the teacher answers "Macro" to dividend headlines
                deadline = time.monotonic() + 20
                while routes.agreement(routes.get("news_topic", fresh=True))[0] < min(6, served.count("student")):
                    assert time.monotonic() < deadline, "monitor samples did not arrive"
                    time.sleep(0.2)
            # A threshold of 0 makes the student answer everything: live agreement on dividend headlines collapses.
            routes.set(route.model_copy(update={"cascade": {**route.cascade, "threshold": 0.0}}), action="test",
                       detail={"reason": "test: serve everything"})
            time.sleep(1.2)
            assert [ask(f"Initech dividend cut {i}")[0] for i in range(8)] == ["student"] * 8
            deadline = time.monotonic() + 20
            while routes.agreement(routes.get("news_topic", fresh=True))[0] < 8:
                assert time.monotonic() < deadline, "monitor samples did not arrive"
                time.sleep(0.2)
            (action,) = control_routes(routes, settings.promotion_policy)
            assert action["action"] == "rollback" and "served share" in action["reason"]
            time.sleep(1.2)
            assert ask("Acme dividend increase again")[0] == "teacher", "rolled back: the teacher answers"
        finally:
            gateway.terminate()
            gateway.wait(timeout=20)
    routes.engine.dispose()
    store.close()
