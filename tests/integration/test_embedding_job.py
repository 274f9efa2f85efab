"""An embedding workload as one job: a real tiny ranking distillation, scored by retrieval of the workload's own
logged queries against the teacher's top-k (with a CI), a decision under the promotion policy, deploy, and the
student answering `/v1/embeddings` through the gateway to the official `openai` client."""

from __future__ import annotations

import time
from pathlib import Path

import openai

from orchestrator.jobs.service import JobService
from orchestrator.jobs.store import JobStore
from orchestrator.pipeline.embedded import embedded_worker
from services.deployment.gateway.app import create_gateway
from services.deployment.routes import RouteStore
from services.deployment.traffic_log import TrafficLogger
from services.domain.queue import make_celery_app
from services.domain.settings import PromotionPolicy
from tests.gateway.fake_teacher import behind_teacher, fake_teacher
from tests.integration.test_job_pipeline import wait_finished
from tests.model_plane import model_plane, retrieval_logs
from tests.servers import serve


def test_embedding_job_trains_for_ranking_and_decides_on_retrieval(tmp_path: Path) -> None:
    plane = model_plane(tmp_path, logs=retrieval_logs(150), workload_id="filing_search", max_steps=6)
    # A lenient policy, so the tiny student is promoted and the test can follow it into the gateway.
    settings = plane.settings.model_copy(update={
        "distillation": plane.settings.distillation.model_copy(
            update={"matryoshka_dims": [8], "listwise_weight": 1.0, "mining_rounds": 2, "listwise_candidates": 6,
                    "hard_negatives": 2, "soup": True}),
        "promotion": PromotionPolicy(min_score=0.0, min_eval_size=1, rollout="direct")})
    store = JobStore(settings.job_store.url)
    with embedded_worker(settings, store) as app:
        job = JobService(settings, store, app).create(workload_id="filing_search", client_id=None,
                                                      overrides={"candidates": ["tiny-emb"]}, actor="test")
        view = wait_finished(store, job.id)

    assert view["status"] == "completed", view
    assert view["dataset"]["workload_type"] == "embedding"
    [emb] = view["candidates"]
    assert emb["status"] == "completed"
    assert [r["round"] for r in emb["training"]["metrics"]["ranking"]["rounds"]] == [0, 1]
    assert emb["training"]["metrics"]["ranking"]["soup"]["vector_steps"] == 6, "the served student is the soup"
    customized = emb["evaluations"]["customized"]
    retrieval = customized["metrics"]["retrieval"]
    assert customized["metrics"]["scorer"] == "retrieval" and retrieval["queries"] > 0
    assert customized["score_vs_teacher"] == retrieval["ndcg_at_10"]
    assert customized["score_vs_teacher_ci"] == retrieval["ndcg_at_10_ci"] is not None
    verdict = {v["candidate"]: v for v in view["decision"]["verdicts"]}["tiny-emb"]
    assert verdict["qualified"] and verdict["ci_low"] is not None, "the policy judges the retrieval score's lower bound"
    assert view["decision"]["chosen"] == "tiny-emb"

    # Deployed: the gateway answers embeddings with the student, Matryoshka sizes included.
    routes = RouteStore(settings.job_store.url)
    deadline = time.monotonic() + 30
    while (route := routes.get("filing_search", fresh=True)).phase != "full" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert route.candidate == "tiny-emb" and route.phase == "full", view["decision"]
    with serve(fake_teacher()) as teacher_url:
        served = behind_teacher(settings, teacher_url, tmp_path)
        gateway = create_gateway(served, logger=TrafficLogger(make_celery_app(served.queue, name="t"),
                                                              served.gateway.spool_path))
        with serve(gateway) as gateway_url:
            client = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key="unused", max_retries=0)
            raw = client.embeddings.with_raw_response.create(model="filing_search", input=["revenue by segment"],
                                                             dimensions=8, extra_body={"input_type": "query"})
            assert raw.headers["x-flywheel-served-by"] == "student"
            assert [len(d.embedding) for d in raw.parse().data] == [8]
    routes.close()
