"""The flywheel closes: a job promotes a student (rollout direct), the deployment manager routes
the workload to it, and the next request through the gateway with the official openai client is
answered by the student; a student failure falls back to the teacher; rollback restores the teacher."""

from __future__ import annotations

import time
from pathlib import Path

from openai import OpenAI

from orchestrator.jobs.service import JobService
from orchestrator.jobs.store import JobStore
from orchestrator.jobs.view import job_view
from orchestrator.pipeline.embedded import embedded_worker
from services.deployment.gateway.app import create_gateway
from services.deployment.rollout import rollback
from services.deployment.routes import RouteStore
from tests.gateway.fake_teacher import behind_teacher, fake_teacher
from tests.model_plane import SYSTEM, model_plane
from tests.servers import serve


class BrokenBackend:
    def chat(self, route, body):  # type: ignore[no-untyped-def]
        raise RuntimeError("student process crashed")


def test_promoted_student_answers_the_next_request(tmp_path: Path) -> None:
    plane = model_plane(tmp_path, records=120, max_steps=3)
    teacher = fake_teacher()
    with serve(teacher) as teacher_url:
        settings = behind_teacher(
            plane.settings, teacher_url, tmp_path,
            # Any student qualifies; no monitoring calls: a background teacher call (10 % of student answers by
            # default) would make the count of teacher calls below a matter of chance.
            promotion={"min_score": 0.0, "min_eval_size": 1, "rollout": "direct", "monitor_share": 0.0},
            tracking={"enabled": True, "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.sqlite'}"})
        store = JobStore(settings.job_store.url)
        with embedded_worker(settings, store) as worker_app:
            job = JobService(settings, store, worker_app).create(
                workload_id="news_topic", client_id=None, overrides={"candidates": ["tiny-clf"]})
            deadline = time.monotonic() + 240
            while store.get_job(job.id).status not in ("completed", "failed", "cancelled"):
                assert time.monotonic() < deadline, job_view(store.get_job(job.id))
                time.sleep(0.2)
            view = job_view(store.get_job(job.id))
            assert view["status"] == "completed", view
            assert view["decision"]["chosen"] == "tiny-clf" and view["decision"]["status"] == "recorded"
            deploy_stage = next(s for s in view["stages"] if s["name"] == "deploy")
            assert deploy_stage["status"] == "completed" and deploy_stage["detail"] == {"attempt": 1}
            from mlflow.tracking import MlflowClient

            registry = MlflowClient(tracking_uri=settings.tracking.tracking_uri,
                                    registry_uri=settings.tracking.tracking_uri)
            champion = registry.get_model_version_by_alias("flywheel-news_topic", "champion")
            assert champion.tags["artifact_id"] == view["decision"]["artifact_id"], "direct rollout: the champion moved"
            route = RouteStore(settings.job_store.url).get("news_topic", fresh=True)
            assert (route.phase, route.candidate, route.job_id) == ("full", "tiny-clf", job.id)

            with serve(create_gateway(settings, celery_app=worker_app)) as gateway_url:
                client = OpenAI(base_url=f"{gateway_url}/v1", api_key="unused", max_retries=0)
                before = len(teacher.state.received)
                raw = client.chat.completions.with_raw_response.create(model="news_topic", messages=[
                    {"role": "system", "content": SYSTEM}, {"role": "user", "content": "Acme quarterly profit beats"}])
                answer = raw.parse()
                assert raw.headers["x-flywheel-served-by"] == "student"
                assert raw.headers["x-flywheel-route-phase"] == "full" and answer.model == "tiny-clf"
                assert answer.choices[0].message.content.startswith("[[[") and len(teacher.state.received) == before
                streamed = client.chat.completions.create(model="news_topic", stream=True, messages=[
                    {"role": "system", "content": SYSTEM}, {"role": "user", "content": "Fed holds"}])
                assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices).startswith("[[[")
                # The student learnt the workload under the logged system prompt; another prompt (a changed
                # teacher prompt, or none) is not what it was trained for: the teacher answers, and it is counted.
                changed = client.chat.completions.with_raw_response.create(model="news_topic", messages=[
                    {"role": "system", "content": SYSTEM + " Also rate the sentiment."},
                    {"role": "user", "content": "Acme quarterly profit beats"}])
                assert changed.headers["x-flywheel-served-by"] == "teacher" and len(teacher.state.received) == before + 1
                import httpx

                assert 'flywheel_gateway_prompt_mismatch_total{workload="news_topic"} 1.0' in httpx.get(
                    f"{gateway_url}/metrics").text

                rolled = rollback(RouteStore(settings.job_store.url), "news_topic", reason="test: live agreement fell")
                assert rolled.phase == "teacher" and rolled.candidate is None
                time.sleep(1.1)  # the gateway caches a route for a second
                after = client.chat.completions.with_raw_response.create(
                    model="news_topic", messages=[{"role": "user", "content": "Acme profit"}])
                assert after.headers["x-flywheel-served-by"] == "teacher"
                assert after.parse().choices[0].message.content == "[[[Earnings]]]"

            RouteStore(settings.job_store.url).set(route, action="deploy", detail={"reason": "test: redeploy"})
            with serve(create_gateway(settings, celery_app=worker_app, backend=BrokenBackend())) as gateway_url:
                client = OpenAI(base_url=f"{gateway_url}/v1", api_key="unused", max_retries=0)
                fallback = client.chat.completions.with_raw_response.create(model="news_topic", messages=[
                    {"role": "system", "content": SYSTEM}, {"role": "user", "content": "Acme profit"}])
                assert fallback.headers["x-flywheel-served-by"] == "teacher", "a broken student falls back"
    history = RouteStore(settings.job_store.url).history("news_topic")
    assert [h["action"] for h in history] == ["deploy", "rollback", "deploy"]
    assert history[1]["detail"]["reason"] == "test: live agreement fell"
