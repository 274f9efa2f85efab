"""The job store contract on SQLite and on the local PostgreSQL (a temporary database per test)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.jobs.models import JobStatus
from orchestrator.jobs.store import JobNotFound, JobStore
from tests.contract.postgres import temporary_database


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobStore]:
    if request.param == "sqlite":
        job_store = JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite'}")
        yield job_store
        job_store.close()
        return
    with temporary_database() as url:
        job_store = JobStore(url)
        yield job_store
        job_store.close()


def test_create_get_list_with_filters_and_pages(store: JobStore) -> None:
    first = store.create_job(workload_id="news", client_id="desk", overrides={"data_split": {"eval_size": 50}})
    assert first.status == "queued" and first.overrides == {"data_split": {"eval_size": 50}}
    for i in range(4):
        store.create_job(workload_id="other" if i % 2 else "news", client_id=None)
    jobs, total = store.list_jobs(workload_id="news", limit=2)
    assert total == 3 and len(jobs) == 2
    assert jobs[0].created_at >= jobs[1].created_at
    _, queued = store.list_jobs(status="queued")
    assert queued == 5
    assert store.get_job(first.id).workload_id == "news"
    with pytest.raises(JobNotFound):
        store.get_job("nope")


def test_stages_track_status_progress_and_time(store: JobStore) -> None:
    job = store.create_job(workload_id="news", client_id=None)
    store.set_stage(job.id, "build_dataset", status=JobStatus.RUNNING)
    store.set_stage(job.id, "build_dataset", status=JobStatus.COMPLETED, result={"dataset_id": "abc"})
    store.set_stage(job.id, "customize", candidate="minilm", status=JobStatus.RUNNING, progress=0.4,
                    detail={"step": 40, "loss": 1.2})
    stages = {(s.name, s.candidate): s for s in store.get_job(job.id).stages}
    built = stages[("build_dataset", None)]
    assert built.status == "completed" and built.progress == 1.0 and built.result == {"dataset_id": "abc"}
    assert built.started_at is not None and built.finished_at is not None and built.finished_at >= built.started_at
    training = stages[("customize", "minilm")]
    assert training.progress == pytest.approx(0.4) and training.detail["step"] == 40 and training.finished_at is None


def test_a_finished_job_never_changes_status_again(store: JobStore) -> None:
    job = store.create_job(workload_id="news", client_id=None)
    store.set_job(job.id, status=JobStatus.RUNNING)
    store.request_cancel(job.id)
    assert store.cancel_requested(job.id) and store.get_job(job.id).status == "running"
    store.set_job(job.id, status=JobStatus.CANCELLED)
    late = store.set_job(job.id, status=JobStatus.COMPLETED, error="late worker message")
    assert late.status == "cancelled" and late.finished_at is not None


def test_cancelling_a_queued_job_is_immediate_and_delete_removes_stages(store: JobStore) -> None:
    job = store.create_job(workload_id="news", client_id=None)
    assert store.request_cancel(job.id).status == "cancelled"
    store.set_stage(job.id, "build_dataset", status=JobStatus.CANCELLED)
    store.delete_job(job.id)
    with pytest.raises(JobNotFound):
        store.get_job(job.id)
    with pytest.raises(JobNotFound):
        store.set_stage(job.id, "build_dataset")


def test_reopening_is_a_noop_migration(store: JobStore) -> None:
    store.create_job(workload_id="news", client_id=None)
    again = JobStore(str(store.engine.url.render_as_string(hide_password=False)))
    assert again.list_jobs()[1] == 1
    again.close()
