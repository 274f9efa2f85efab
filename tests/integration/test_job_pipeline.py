"""A whole job through the real pipeline: the canvas built by task name, an in-process Celery worker
on the embedded SQLite broker, the job store recording every stage, and the decision at the end."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from orchestrator.jobs.service import JobService
from orchestrator.jobs.store import JobStore
from orchestrator.jobs.view import job_view
from orchestrator.pipeline.embedded import embedded_worker
from services.domain.jobs import JobStatus
from tests.model_plane import model_plane


def wait_finished(store: JobStore, job_id: str, timeout: float = 300.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = store.get_job(job_id)
        if JobStatus(job.status).finished and (job.decision is not None or job.status != "completed"):
            return job_view(job)
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s: {job_view(store.get_job(job_id))}")


@pytest.fixture
def plane(tmp_path: Path):
    return model_plane(tmp_path, records=120, max_steps=3)


def test_job_runs_every_stage_and_decides(plane) -> None:
    settings = plane.settings.model_copy(update={"tracking": plane.settings.tracking.model_copy(update={"enabled": True})})
    store = JobStore(settings.job_store.url)
    with embedded_worker(settings, store) as app:
        service = JobService(settings, store, app)
        job = service.create(workload_id="news_topic", client_id=None, actor="test")
        assert job.status == "queued" and len(job.stages) == 1 + 3 * 4 + 1, "the whole plan is visible at once"
        view = wait_finished(store, job.id)
        deadline = time.monotonic() + 120
        while not (run_id := store.get_job(job.id).stages[-1].detail.get("mlflow_run_id")):  # tracked after deciding
            assert time.monotonic() < deadline, "the job was never tracked in MLflow"
            time.sleep(0.2)

    assert view["status"] == "completed", view
    assert view["dataset"]["counts"]["eval"] == plane.dataset.splits["eval"]["count"]
    by_name = {c["name"]: c for c in view["candidates"]}
    lora = by_name["tiny-lora"]
    assert lora["status"] == "completed"
    for kind in ("base", "icl", "customized"):
        assert 0.0 <= lora["evaluations"][kind]["f1_vs_teacher"] <= 1.0
    assert lora["training"]["metrics"]["steps"] == 3 and len(lora["training"]["artifact_id"]) == 64
    clf = by_name["tiny-clf"]
    assert clf["evaluations"]["base"]["applicable"] is False and "does not apply" in clf["evaluations"]["base"]["reason"]
    assert clf["evaluations"]["customized"]["f1_vs_teacher"] is not None
    # An embedding student cannot learn a classification workload: that candidate fails, the job goes on.
    emb = by_name["tiny-emb"]
    assert emb["status"] == "failed"
    assert any(f["candidate"] == "tiny-emb" and f["stage"] == "customize" and "cannot learn" in f["error"]
               for f in view["failed_candidates"])
    assert all(s["status"] in ("completed", "failed", "cancelled") for s in view["stages"])
    decision = view["decision"]
    verdicts = {v["candidate"]: v for v in decision["verdicts"]}
    assert set(verdicts) == {"tiny-lora", "tiny-clf", "tiny-emb"}, "every candidate gets a reason"
    assert any("eval set has" in r for r in verdicts["tiny-lora"]["reasons"]), "24 eval records < policy minimum"
    assert decision["chosen"] is None and decision["status"] == "keep_teacher"
    assert [e.kind for e in store.events(job_id=job.id)] == ["job.created"]
    # The job's MLflow run: a parent run per job, a child per candidate with its scores.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=settings.tracking.tracking_uri)
    assert client.get_run(run_id).data.tags["flywheel.job_id"] == job.id
    children = client.search_runs([client.get_run(run_id).info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{run_id}'")
    scores = {r.info.run_name: r.data.metrics.get("customized.f1_vs_teacher") for r in children}
    assert scores["tiny-lora"] == pytest.approx(lora["evaluations"]["customized"]["f1_vs_teacher"])


def test_candidate_subset_and_invalid_overrides(plane) -> None:
    from services.domain.errors import ConfigError

    store = JobStore(plane.settings.job_store.url)
    service = JobService(plane.settings, store, app=None)  # type: ignore[arg-type] - validation fails before enqueueing
    with pytest.raises(ConfigError, match="no candidate named 'nope'"):
        service.create(workload_id="news_topic", client_id=None, overrides={"candidates": ["nope"]})
    with pytest.raises(ConfigError, match="learning_rate"):
        service.create(workload_id="news_topic", client_id=None, overrides={"training": {"learning_rate": -1}})
    with pytest.raises(ConfigError, match="eval_size"):
        service.create(workload_id="news_topic", client_id=None, overrides={"data": {"data_split.eval_size": 0}})
    with pytest.raises(ConfigError, match="not allowed"):
        service.create(workload_id="news_topic", client_id=None, overrides={"data": {"job_store.url": "x"}})
    assert store.list_jobs()[1] == 0, "an invalid job is never created"


def test_cancel_stops_training_at_the_next_step(tmp_path: Path) -> None:
    plane = model_plane(tmp_path, records=120, epochs=100, max_steps=5000, early_stopping_patience=0)
    store = JobStore(plane.settings.job_store.url)
    with embedded_worker(plane.settings, store) as app:
        service = JobService(plane.settings, store, app)
        job = service.create(workload_id="news_topic", client_id=None, overrides={"candidates": ["tiny-lora"]})
        deadline = time.monotonic() + 120
        while True:
            customize = next(s for s in store.get_job(job.id).stages if s.name == "customize")
            if customize.status == "running" and (customize.detail or {}).get("step"):
                break
            assert time.monotonic() < deadline, "training never started"
            time.sleep(0.1)
        service.cancel(job.id, actor="test")
        view = wait_finished(store, job.id, timeout=120)
    assert view["status"] == "cancelled"
    stages = {s["name"]: s for s in view["stages"]}
    assert stages["customize"]["status"] == "cancelled" and "cancelled" in stages["customize"]["error"]
    assert stages["customize"]["detail"]["step"] < 5000, "training stopped long before its last step"
    assert stages["customized_eval"]["status"] == "cancelled" and stages["decide"]["status"] == "cancelled"
    assert view["decision"] is None
    work = Path(plane.settings.artifacts.root) / "work" / "tiny-lora"
    assert not work.exists() or not any(work.iterdir()), "a cancelled job leaves no checkpoints behind"


def test_several_jobs_run_at_once(plane) -> None:
    store = JobStore(plane.settings.job_store.url)
    with embedded_worker(plane.settings, store) as app:
        service = JobService(plane.settings, store, app)
        jobs = [service.create(workload_id="news_topic", client_id=None, overrides={
            "candidates": ["tiny-clf"], "training": {"max_steps": steps}}) for steps in (2, 3)]
        views = [wait_finished(store, job.id) for job in jobs]
    assert [v["status"] for v in views] == ["completed", "completed"]
    assert [v["candidates"][0]["training"]["metrics"]["steps"] for v in views] == [2, 3]
    assert views[0]["dataset_id"] == views[1]["dataset_id"], "the same logs and data config build one dataset"
