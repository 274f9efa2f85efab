"""track_job(): a finished job lands in a real MLflow (SQLite store) once, and a broken store never raises."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from orchestrator.tracking import track_job
from services.domain.decisions import PromotionDecision
from services.domain.evaluation import EvalKind, EvalResult, LatencyStats
from services.domain.settings import Settings

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite store for the module: creating its schema takes seconds; tests use their own workloads."""
    return tmp_path_factory.mktemp("mlflow")


def settings_for(store: Path, *, enabled: bool = True, uri: str | None = None) -> Settings:
    return Settings.model_validate({
        "tracking": {"enabled": enabled, "tracking_uri": uri or f"sqlite:///{store / 'mlflow.sqlite'}"},
        "artifacts": {"root": str(store / "artifacts")},
    })


def client_for(store: Path) -> MlflowClient:
    uri = f"sqlite:///{store / 'mlflow.sqlite'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def evaluation(candidate: str, kind: EvalKind, score: float | None,
               ci: tuple[float, float] | None = None) -> dict[str, Any]:
    if score is None:
        return EvalResult.not_applicable(candidate, kind, "d" * 64, "e" * 64, "classification", "no base").to_public()
    return EvalResult(candidate=candidate, eval_kind=kind, dataset_id="d" * 64, eval_sha256="e" * 64,
                      workload_type="classification", score=score, ci=ci, n=24, model_size_bytes=4096,
                      latency=LatencyStats(n=24, p50_ms=2.5, p95_ms=4.0, mean_ms=2.7, throughput_per_s=300.0),
                      artifact_id=f"eval-{candidate}-{kind}").to_public()


def job_view(workload: str, adapter_dir: Path, *, status: str = "completed") -> dict[str, Any]:
    """What orchestrator.jobs.view.job_view returns for a job with two candidates, one chosen."""
    job_id = str(uuid.uuid4())
    stamp = "2026-11-26T10:0{}:00+00:00"
    training = {"status": "completed", "progress": 1.0, "live": {}, "artifact_id": "a" * 64, "path": str(adapter_dir),
                "size_bytes": 5, "error": None,
                "metrics": {"steps": 3, "train_loss": 1.2, "best_val_loss": 1.1, "best_step": 3, "examples_per_s": 10.0,
                            "train_seconds": 2.0, "stopped_early": False, "train_examples": 82,
                            "val_history": [[1, 1.3], [3, 1.1]]}}
    lora_evals = {"base": evaluation("smollm2-lora", EvalKind.BASE, 0.4, (0.3, 0.5)),
                  "icl": {"status": "failed", "error": "TeacherError: timeout", "progress": 0.0},
                  "customized": evaluation("smollm2-lora", EvalKind.CUSTOMIZED, 0.93, (0.91, 0.95))}
    minilm_evals = {"base": evaluation("minilm-classifier", EvalKind.BASE, None), "icl": None,
                    "customized": evaluation("minilm-classifier", EvalKind.CUSTOMIZED, 0.7, (0.6, 0.8))}
    verdicts = [{"candidate": "smollm2-lora", "qualified": True, "reasons": [], "score": 0.93},
                {"candidate": "minilm-classifier", "qualified": False, "score": 0.7,
                 "reasons": ["lower CI bound 0.600 is below the minimum 0.900", "p95 latency 4.0 ms exceeds 3.0 ms"]}]
    return {
        "id": job_id, "workload_id": workload, "client_id": "acme", "status": status,
        "created_at": stamp.format(0), "updated_at": stamp.format(9), "finished_at": stamp.format(9), "error": None,
        "dataset_id": "d" * 64, "progress": 1.0, "chosen": "smollm2-lora", "cancel_requested": False,
        "overrides": {"training": {"max_steps": 3}},
        "stages": [{"name": "customize", "candidate": "smollm2-lora", "status": "completed", "progress": 1.0,
                    "detail": {}, "error": None, "started_at": stamp.format(1), "finished_at": stamp.format(4)}],
        "dataset": {"dataset_id": "d" * 64, "workload_type": "classification",
                    "counts": {"eval": 24, "train": 82, "val": 14, "icl_eval": 24}, "labels": ["a", "b"],
                    "teacher_usage": {"prompt_tokens": 50.0, "completion_tokens": 5.0}},
        "candidates": [{"name": "smollm2-lora", "status": "completed", "evaluations": lora_evals, "training": training},
                       {"name": "minilm-classifier", "status": "completed", "evaluations": minilm_evals,
                        "training": None}],
        "failed_candidates": [],
        "decision": PromotionDecision.model_validate({
            "workload_id": workload, "chosen": "smollm2-lora", "artifact_id": "a" * 64,
            "reason": "smollm2-lora qualifies " * 400, "verdicts": verdicts, "teacher_cost_per_1k_requests": 1.23,
            "chosen_cost_per_1k_requests": 0.01, "rollout": "direct", "requires_approval": False, "status": "recorded", "policy": {},
        }).model_dump(mode="json"),
    }


def track(settings: Settings, view: dict[str, Any], **options: Any) -> str | None:
    """track_job with the view's decision as the record the job store holds."""
    decision = PromotionDecision.model_validate(view["decision"]) if view["decision"] else None
    return track_job(settings, view, decision=decision, **options)


@pytest.fixture
def adapter_dir(tmp_path: Path) -> Path:
    path = tmp_path / "adapter"
    path.mkdir()
    (path / "adapter_model.safetensors").write_bytes(b"12345")
    return path


def parent_runs(client: MlflowClient, experiment_id: str, job_id: str) -> list[Any]:
    return client.search_runs([experiment_id], f"tags.`flywheel.job_id` = '{job_id}'")


def test_completed_job_is_recorded(store: Path, adapter_dir: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root is ./mlruns: nothing may land there
    view = job_view("news_topic", adapter_dir)
    run_id = track(settings_for(store), view, attempts=1)

    client = client_for(store)
    experiment = client.get_experiment_by_name("flywheel-news_topic")
    assert experiment is not None and run_id is not None
    assert experiment.artifact_location.startswith((store / "artifacts" / "mlflow").as_uri())
    [parent] = parent_runs(client, experiment.experiment_id, view["id"])
    assert parent.info.run_id == run_id and parent.info.status == "FINISHED"
    assert parent.info.run_name == f"job-{view['id'][:8]}"
    assert parent.data.tags["flywheel.client_id"] == "acme" and parent.data.tags["flywheel.status"] == "completed"
    assert parent.data.tags["flywheel.decision.chosen"] == "smollm2-lora"
    assert len(parent.data.tags["flywheel.decision.reason"]) == 5000
    assert parent.data.params["overrides"] == '{"training": {"max_steps": 3}}'
    assert parent.data.params["train_count"] == "82" and parent.data.params["eval_count"] == "24"
    assert parent.data.metrics == {"teacher_cost_per_1k_requests": 1.23, "chosen_cost_per_1k_requests": 0.01}
    assert {a.path for a in client.list_artifacts(run_id)} == {"job.json", "decision.json"}
    assert list((store / "artifacts" / "mlflow").rglob("job.json")) and not (tmp_path / "mlruns").exists()

    children = {r.info.run_name: r for r in client.search_runs(
        [experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{run_id}'")}
    assert set(children) == {"smollm2-lora", "minilm-classifier"}
    lora, minilm = children["smollm2-lora"], children["minilm-classifier"]
    customized = view["candidates"][0]["evaluations"]["customized"]
    assert lora.data.metrics["customized.f1_vs_teacher"] == customized["f1_vs_teacher"] == 0.93
    assert lora.data.metrics["customized.f1_vs_teacher_ci_low"] == 0.91
    assert lora.data.metrics["customized.f1_vs_teacher_ci_high"] == 0.95
    assert lora.data.metrics["customized.latency_p95_ms"] == 4.0 and lora.data.metrics["base.f1_vs_teacher"] == 0.4
    assert lora.data.metrics["customized.model_size_bytes"] == 4096 and lora.data.metrics["train_loss"] == 1.2
    assert not any(key.startswith("icl.") for key in lora.data.metrics)  # the failed evaluation has no score
    assert [(m.step, m.value) for m in client.get_metric_history(lora.info.run_id, "val_loss")] == [(1, 1.3), (3, 1.1)]
    assert lora.data.params["student_kind"] == "causal_lm_lora" and lora.data.params["artifact_id"] == "a" * 64
    assert minilm.data.params["student_kind"] == "encoder_classifier"
    assert not any(key.startswith("base.") for key in minilm.data.metrics)  # not applicable
    assert minilm.data.tags["flywheel.candidate.reasons"] == ("lower CI bound 0.600 is below the minimum 0.900; "
                                                               "p95 latency 4.0 ms exceeds 3.0 ms")

    model = client.get_registered_model("flywheel-news_topic")
    assert model.aliases == {}
    [version] = client.search_model_versions("name = 'flywheel-news_topic'")
    assert version.tags["artifact_id"] == "a" * 64 and version.tags["job_id"] == view["id"]
    assert version.source == str(adapter_dir) and version.run_id == lora.info.run_id


def test_tracking_twice_records_once(store: Path, adapter_dir: Path) -> None:
    view = job_view("redelivered", adapter_dir)
    first = track(settings_for(store), view, attempts=1)
    second = track(settings_for(store), view, attempts=1)

    client = client_for(store)
    experiment = client.get_experiment_by_name("flywheel-redelivered")
    assert experiment is not None and first is not None and second == first
    experiment_id = experiment.experiment_id
    assert len(parent_runs(client, experiment_id, view["id"])) == 1
    assert len(client.search_runs([experiment_id], "")) == 3
    assert len(client.search_model_versions("name = 'flywheel-redelivered'")) == 1


def test_half_written_record_is_replaced(store: Path, adapter_dir: Path) -> None:
    view = job_view("crashed", adapter_dir)
    client = client_for(store)
    experiment_id = client.create_experiment("flywheel-crashed", artifact_location=(store / "crashed").as_uri())
    stale = client.create_run(experiment_id, tags={"flywheel.job_id": view["id"]}).info.run_id  # left RUNNING
    client.create_registered_model("flywheel-crashed")
    client.create_model_version("flywheel-crashed", str(adapter_dir), run_id=stale, tags={"job_id": view["id"]})

    run_id = track(settings_for(store), view, attempts=1)

    assert run_id is not None and run_id != stale
    [parent] = parent_runs(client, experiment_id, view["id"])
    assert parent.info.run_id == run_id and parent.info.status == "FINISHED"
    assert client.get_run(stale).info.lifecycle_stage == "deleted"
    [version] = client.search_model_versions("name = 'flywheel-crashed'")
    assert int(version.version) == 2 and version.run_id != stale  # int from the SQLite store, str over REST


def test_failed_job_is_recorded_as_failed(store: Path, adapter_dir: Path) -> None:
    view = job_view("broken", adapter_dir, status="failed")
    view.update(decision=None, chosen=None, error="TrainingFailed: out of memory")
    view["candidates"][0]["status"] = "failed"
    view["failed_candidates"] = [{"candidate": "smollm2-lora", "stage": "customize", "error": "TrainingFailed: oom"}]

    run_id = track(settings_for(store), view, attempts=1)

    client = client_for(store)
    assert run_id is not None
    parent = client.get_run(run_id)
    assert parent.info.status == "FAILED" and parent.data.tags["flywheel.error"] == "TrainingFailed: out of memory"
    assert "flywheel.decision.chosen" not in parent.data.tags and parent.data.metrics == {}
    assert {a.path for a in client.list_artifacts(run_id)} == {"job.json"}
    children = {r.info.run_name: r for r in client.search_runs(
        [parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{run_id}'")}
    assert children["smollm2-lora"].info.status == "FAILED"
    assert children["smollm2-lora"].data.tags["flywheel.candidate.error"] == "customize: TrainingFailed: oom"
    assert client.search_registered_models("name = 'flywheel-broken'") == []


@pytest.mark.parametrize(("kind", "reason"), [("sqlite", "FileExistsError"), ("http", "http://127.0.0.1:9/api")])
def test_broken_store_returns_none_quickly(kind: str, reason: str, tmp_path: Path, adapter_dir: Path,
                                           monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    (tmp_path / "a-file").write_text("not a directory")
    # MLflow creates a SQLite file's parent directories (as root, even /nonexistent): a file in the way fails.
    uri = f"sqlite:///{tmp_path / 'a-file' / 'x.sqlite'}" if kind == "sqlite" else "http://127.0.0.1:9/"

    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="orchestrator.tracking"):
        result = track(settings_for(tmp_path, uri=uri), job_view("down", adapter_dir), attempts=2, backoff_s=0.01)

    assert result is None
    assert time.monotonic() - started < 10
    warnings = [r.getMessage() for r in caplog.records if r.name == "orchestrator.tracking"]
    assert len(warnings) == 2 and "attempt 2/2" in warnings[1] and reason in warnings[1]


def test_disabled_tracking_records_nothing(tmp_path: Path, adapter_dir: Path) -> None:
    assert track(settings_for(tmp_path, enabled=False), job_view("off", adapter_dir)) is None
    assert not (tmp_path / "mlflow.sqlite").exists() and not (tmp_path / "artifacts").exists()


def test_importing_the_module_does_not_import_mlflow() -> None:
    code = "import sys, orchestrator.tracking; sys.exit('mlflow' in sys.modules or 'torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=60).returncode == 0
