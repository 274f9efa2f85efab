"""The service tasks by name over the embedded broker with a real in-process worker, sent one by one
(standalone, no job): build a dataset -> train a student -> evaluate it."""

from __future__ import annotations

from pathlib import Path

from celery.contrib.testing.worker import start_worker

from orchestrator.pipeline.workers import registered_app
from services.domain.tasks import BUILD_DATASET, EVALUATE, QUEUE_OF, TRAIN
from tests.model_plane import model_plane


def test_build_train_evaluate_by_task_name(tmp_path: Path) -> None:
    plane = model_plane(tmp_path, records=120, max_steps=3)
    settings = plane.settings.model_copy(update={"queue": plane.settings.queue.model_copy(
        update={"embedded_dir": tmp_path / "queue", "polling_interval_s": 0.05})})
    app = registered_app(settings, ["datastore", "customizer", "evaluator"])
    with start_worker(app, pool="threads", concurrency=2, perform_ping_check=False, shutdown_timeout=30,
                      queues=["datastore", "customizer", "evaluator"]):
        build = {"workload_id": "news_topic", "client_id": None}
        built = app.send_task(BUILD_DATASET, kwargs={"payload": build}, queue=QUEUE_OF[BUILD_DATASET]).get(timeout=120)
        again = app.send_task(BUILD_DATASET, kwargs={"payload": build}, queue=QUEUE_OF[BUILD_DATASET]).get(timeout=120)
        assert built["dataset_id"] == again["dataset_id"], "a re-delivered build gives the same dataset"
        assert built["counts"]["eval"] == plane.dataset.splits["eval"]["count"]
        trained = app.send_task(TRAIN, kwargs={"payload": {"dataset_id": built["dataset_id"], "candidate": "tiny-lora"}},
                                queue=QUEUE_OF[TRAIN]).get(timeout=300)
        assert len(trained["artifact_id"]) == 64 and trained["metrics"]["steps"] == 3
        scored = app.send_task(EVALUATE, kwargs={"payload": {
            "dataset_id": built["dataset_id"], "candidate": "tiny-lora", "kind": "customized",
            "artifact_id": trained["artifact_id"]}},
                               queue=QUEUE_OF[EVALUATE]).get(timeout=300)
        missing = app.send_task(TRAIN, kwargs={"payload": {"candidate": "tiny-lora"}},
                                queue=QUEUE_OF[TRAIN]).get(timeout=60)
    assert built["ok"] and trained["ok"] and scored["ok"]
    public = scored["public"]
    assert public["artifact_id"] == trained["artifact_id"] and 0 <= public["f1_vs_teacher"] <= 1
    assert public["decoding"] == "constrained"
    assert not missing["ok"] and "no dataset_id" in missing["error"], "a bad payload fails with a reason, not a crash"
