"""An embedding workload as one job: a real tiny ranking distillation, scored by retrieval of the workload's own
logged queries against the teacher's top-k (with a CI), and a decision under the promotion policy."""

from __future__ import annotations

from pathlib import Path

from orchestrator.jobs.service import JobService
from orchestrator.jobs.store import JobStore
from orchestrator.pipeline.embedded import embedded_worker
from tests.integration.test_job_pipeline import wait_finished
from tests.model_plane import model_plane, retrieval_logs


def test_embedding_job_trains_for_ranking_and_decides_on_retrieval(tmp_path: Path) -> None:
    plane = model_plane(tmp_path, logs=retrieval_logs(150), workload_id="filing_search", max_steps=6)
    settings = plane.settings.model_copy(update={"distillation": plane.settings.distillation.model_copy(
        update={"matryoshka_dims": [8], "listwise_weight": 1.0, "mining_rounds": 2, "listwise_candidates": 6,
                "hard_negatives": 2})})
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
    customized = emb["evaluations"]["customized"]
    retrieval = customized["metrics"]["retrieval"]
    assert customized["metrics"]["scorer"] == "retrieval" and retrieval["queries"] > 0
    assert customized["score_vs_teacher"] == retrieval["ndcg_at_10"]
    assert customized["score_vs_teacher_ci"] == retrieval["ndcg_at_10_ci"] is not None
    verdict = {v["candidate"]: v for v in view["decision"]["verdicts"]}["tiny-emb"]
    assert verdict["reasons"], "the promotion policy gives its reasons for an embedding student too"
