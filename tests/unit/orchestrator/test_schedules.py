"""Scheduled runs and the drift trigger against real stores (SQLite logs, SQLite job store) and the
real embedded broker: a run starts a job only with enough new data, otherwise records why."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from orchestrator.jobs.service import JobService
from orchestrator.jobs.store import JobStore
from orchestrator.pipeline.embedded import embedded_worker
from orchestrator.schedules import beat_schedule, drift_check, next_runs, scheduled_run
from services.datastore.stores.sqlite import SqliteLogStore
from services.domain.errors import ConfigError
from services.domain.jobs import JobStatus
from services.domain.queue import make_celery_app
from services.domain.records import LogRecord
from services.domain.settings import Settings, apply_overrides
from services.domain.tasks import DRIFT_CHECK, QUEUE_OF, SCHEDULED_RUN
from tests.model_plane import classification_logs, model_plane


def scheduled(settings: Settings, **schedule: object) -> Settings:
    return apply_overrides(settings, {"workloads": {"news_topic": {"schedule": schedule}}})


def add_logs(settings: Settings, records: list[dict]) -> None:
    with SqliteLogStore(settings.log_store.sqlite_path) as store:
        store.write([LogRecord.model_validate(r) for r in records])


def later(records: list[dict], *, label: str | None = None) -> list[dict]:
    for r in records:
        r["timestamp"] += 100_000
        if label is not None:
            r["response"]["choices"][0]["message"]["content"] = f"[[[{label}]]]"
    return records


def test_cron_is_validated_and_becomes_beat_entries(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs 5 fields"):
        scheduled(Settings(), cron="every day")
    settings = scheduled(Settings(), cron="0 2 * * *", drift={"enabled": True, "check_cron": "*/15 * * * *"})
    entries = beat_schedule(settings, (SCHEDULED_RUN, DRIFT_CHECK))
    assert set(entries) == {"schedule:news_topic", "drift:news_topic", "routes:controller"}
    assert entries["schedule:news_topic"]["task"] == SCHEDULED_RUN
    assert entries["schedule:news_topic"]["kwargs"] == {"payload": {"workload_id": "news_topic"}}
    from datetime import UTC, datetime

    rows = {r["kind"]: r for r in next_runs(settings, now=datetime(2026, 11, 26, 10, 7, tzinfo=UTC))}
    assert rows["cron"]["next_run"] == "2026-11-27T02:00:00+00:00"
    assert rows["drift"]["next_run"] == "2026-11-26T10:15:00+00:00"


def test_scheduled_runs_need_new_data_and_an_idle_workload(tmp_path: Path) -> None:
    plane = model_plane(tmp_path, records=120)
    settings = scheduled(plane.settings, cron="0 * * * *", min_new_records=100)
    store = JobStore(settings.job_store.url)
    service = JobService(settings, store, make_celery_app(settings.queue, name="test"))  # nobody consumes: jobs stay queued

    first = scheduled_run(settings, store, service, "news_topic")
    assert first["started"] and first["new_records"] == 120
    busy = scheduled_run(settings, store, service, "news_topic")
    assert not busy["started"] and "still queued or running" in busy["reason"]
    store.set_job(first["job_id"], status=JobStatus.COMPLETED)
    idle = scheduled_run(settings, store, service, "news_topic")
    assert not idle["started"] and idle["reason"].startswith("skipped: not enough new data (0 new records")
    add_logs(settings, later(classification_logs(150, seed=9)))
    again = scheduled_run(settings, store, service, "news_topic")
    assert again["started"] and again["new_records"] == 150
    kinds = [e.kind for e in store.events(workload_id="news_topic", limit=20)]
    assert kinds.count("schedule.skipped") == 2 and kinds.count("schedule.started") == 2
    assert store.list_jobs(workload_id="news_topic")[1] == 2, "a skipped run creates no job"


def test_drift_starts_a_job_when_new_labels_appear(tmp_path: Path) -> None:
    plane = model_plane(tmp_path, records=120)
    settings = scheduled(plane.settings, drift={"enabled": True, "window": 60, "new_label_share": 0.2})
    store = JobStore(settings.job_store.url)
    service = JobService(settings, store, make_celery_app(settings.queue, name="test"))
    assert drift_check(settings, store, service, "news_topic")["reason"].startswith("nothing to compare")
    baseline = store.create_job(workload_id="news_topic", client_id=None)
    store.set_job(baseline.id, status=JobStatus.COMPLETED, dataset_id=plane.dataset.dataset_id)

    calm = drift_check(settings, store, service, "news_topic")
    assert not calm["started"] and calm["reason"] == "no drift" and calm["new_label_share"] == 0.0
    add_logs(settings, later(classification_logs(30, seed=4), label="crypto"))  # half the window: a new label
    drifted = drift_check(settings, store, service, "news_topic")
    assert drifted["started"] and drifted["new_labels"] == ["crypto"] and drifted["new_label_share"] == 0.5
    (event,) = store.events(kind="drift.triggered")
    assert event.job_id == drifted["job_id"] and "labels the last dataset lacks" in event.detail["reasons"][0]


def test_beat_task_runs_on_the_orchestrator_queue(tmp_path: Path) -> None:
    plane = model_plane(tmp_path, records=120)
    settings = scheduled(plane.settings, cron="0 * * * *", min_new_records=500)
    store = JobStore(settings.job_store.url)
    with embedded_worker(settings, store) as app:
        outcome = app.send_task(SCHEDULED_RUN, kwargs={"payload": {"workload_id": "news_topic"}},
                                queue=QUEUE_OF[SCHEDULED_RUN]).get(timeout=60)
    assert outcome == {"started": False, "new_records": 120,
                       "reason": "skipped: not enough new data (120 new records since the last job; needs 500)"}
    deadline = time.monotonic() + 5
    while not store.events(kind="schedule.skipped") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert store.events(kind="schedule.skipped")[0].detail["log_records"] == 120
