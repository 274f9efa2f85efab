"""Record finished jobs in MLflow: an experiment per workload, a parent run per job, a child run per candidate.

Tracking is a side record: a tracking store that is down or refuses a value must never fail a job, so
`track_job` retries, logs a warning and returns None. It uses an explicit `MlflowClient` rather than the
fluent API, whose tracking URI and active run are process-global and would leak between jobs tracked
from threads of one worker. mlflow is imported lazily so the API process stays light.

A parent run is written RUNNING and terminated last, so a terminated parent tagged with the job id means
"recorded": a re-delivered task returns it, and a RUNNING one (an attempt that died) is discarded and
written again.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from services.domain.decisions import CandidateVerdict, PromotionDecision
from services.domain.settings import Settings

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

RUN_STATUS = {"completed": "FINISHED", "failed": "FAILED", "cancelled": "KILLED"}
EVAL_KINDS = ("base", "icl", "customized")
TRAINING_SCALARS = ("steps", "train_loss", "best_val_loss", "best_step", "examples_per_s", "train_seconds",
                    "train_examples")
JOB_TAG = "flywheel.job_id"
REASON_CHARS = 5000
PARAM_CHARS = 6000  # MLflow's MAX_PARAM_VAL_LENGTH
BATCH = 100  # MLflow's cap on params (and tags) per log_batch call
REMOTE_SCHEMES = ("http", "https", "databricks")

Metrics = list[tuple[str, float, int]]


def track_job(settings: Settings, view: dict[str, Any], *, decision: PromotionDecision | None, attempts: int = 3,
              backoff_s: float = 1.0) -> str | None:
    """Record a finished job (its view and its decision) in MLflow; return the parent run id, or None when
    tracking is disabled or failed."""
    if not settings.tracking.enabled:
        return None
    if view.get("status") not in RUN_STATUS:
        log.warning("not tracking job %s: status %r is not a finished one", view.get("id"), view.get("status"))
        return None
    attempts = max(attempts, 1)
    for attempt in range(1, attempts + 1):
        try:
            return _record(settings, view, decision)
        except Exception as exc:  # any failure (import, network, database, a refused value) only costs the record
            log.warning("MLflow tracking of job %s failed (attempt %d/%d): %s: %s",
                        view.get("id"), attempt, attempts, type(exc).__name__, exc)
            if attempt < attempts:
                time.sleep(backoff_s * 2 ** (attempt - 1))
    return None


def _record(settings: Settings, view: dict[str, Any], decision: PromotionDecision | None) -> str:
    from mlflow.tracking import MlflowClient

    uri = settings.tracking.tracking_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    name = f"{settings.tracking.experiment_prefix}-{view['workload_id']}"
    experiment_id = _experiment(client, name, _artifact_location(settings, uri, name))
    existing = _recorded_parent(client, experiment_id, view["id"])
    if existing is not None:
        return existing
    parent_id: str = client.create_run(experiment_id, start_time=_ms(view.get("created_at")),
                                  run_name=f"job-{view['id'][:8]}", tags={JOB_TAG: view["id"]}).info.run_id
    counts = (view.get("dataset") or {}).get("counts") or {}
    _log(client, parent_id, tags={
        "flywheel.workload_id": view["workload_id"], "flywheel.client_id": view.get("client_id"),
        "flywheel.status": view["status"], "flywheel.dataset_id": view.get("dataset_id"),
        "flywheel.error": _clip(view.get("error"), REASON_CHARS),
        "flywheel.decision.chosen": (decision.chosen or "none") if decision else None,
        "flywheel.decision.status": decision.status if decision else None,
        "flywheel.decision.reason": _clip(decision.reason, REASON_CHARS) if decision else None,
    }, params={
        "workload_id": view["workload_id"], "client_id": view.get("client_id"), "dataset_id": view.get("dataset_id"),
        "workload_type": (view.get("dataset") or {}).get("workload_type"),
        "overrides": json.dumps(view.get("overrides") or {}, sort_keys=True),
        **{f"{split}_count": n for split, n in counts.items()},
    }, metrics=_numbers({"teacher_cost_per_1k_requests": decision.teacher_cost_per_1k_requests,
                         "chosen_cost_per_1k_requests": decision.chosen_cost_per_1k_requests} if decision else {}))
    verdicts = {v.candidate: v for v in decision.verdicts} if decision else {}
    children = {c["name"]: _record_candidate(client, settings, experiment_id, parent_id, view, c,
                                             verdicts.get(c["name"]))
                for c in view.get("candidates") or []}
    if decision is not None and decision.chosen in children:
        _register(client, name, view, decision, children[decision.chosen])
    client.log_dict(parent_id, view, "job.json")
    if decision is not None:
        client.log_dict(parent_id, decision.model_dump(mode="json"), "decision.json")
    client.set_terminated(parent_id, RUN_STATUS[view["status"]], end_time=_ms(view.get("finished_at")))
    return parent_id


def _experiment(client: MlflowClient, name: str, location: str | None) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return client.create_experiment(name, artifact_location=location)
    if experiment.lifecycle_stage == "deleted":  # a deleted experiment still holds its name
        client.restore_experiment(experiment.experiment_id)
    return str(experiment.experiment_id)


def _artifact_location(settings: Settings, uri: str, name: str) -> str | None:
    """Local stores default to ./mlruns of the current directory; keep artifacts under artifacts.root instead."""
    if urlparse(uri).scheme in REMOTE_SCHEMES:
        return None  # the tracking server decides (proxied artifacts)
    return (settings.artifacts.root.resolve() / "mlflow" / name).as_uri()


def _recorded_parent(client: MlflowClient, experiment_id: str, job_id: str) -> str | None:
    runs = client.search_runs([experiment_id], f"tags.`{JOB_TAG}` = '{job_id}'")
    done: list[str] = [r.info.run_id for r in runs if r.info.status != "RUNNING"]
    if done:
        return done[0]
    for run in runs:  # half-written by an attempt that died: drop it with its children and versions
        for child in client.search_runs([experiment_id], f"tags.`mlflow.parentRunId` = '{run.info.run_id}'"):
            client.delete_run(child.info.run_id)
        client.delete_run(run.info.run_id)
    for version in client.search_model_versions(f"tags.job_id = '{job_id}'"):
        client.delete_model_version(version.name, version.version)
    return None


def _record_candidate(client: MlflowClient, settings: Settings, experiment_id: str, parent_id: str,
                      view: dict[str, Any], candidate: dict[str, Any], verdict: CandidateVerdict | None) -> str:
    name = candidate["name"]
    spec = next((c for c in settings.candidates if c.name == name), None)
    training = candidate.get("training") or {}
    scalars = training.get("metrics") or {}
    failure = next((f for f in view.get("failed_candidates") or [] if f.get("candidate") == name), None)
    start, end = _span(view, name)
    run_id: str = client.create_run(experiment_id, start_time=start, run_name=name,
                               tags={"mlflow.parentRunId": parent_id, "flywheel.candidate": name}).info.run_id
    metrics = _numbers({k: scalars.get(k) for k in TRAINING_SCALARS})
    metrics += [("val_loss", float(loss), int(step)) for step, loss in scalars.get("val_history") or []]
    for kind in EVAL_KINDS:
        metrics += _eval_metrics(kind, (candidate.get("evaluations") or {}).get(kind))
    _log(client, run_id, metrics=metrics, params={
        "candidate": name, "student_kind": spec.kind if spec else None, "student_model": spec.model if spec else None,
        "artifact_id": training.get("artifact_id"), "stopped_early": scalars.get("stopped_early"),
    }, tags={
        "flywheel.candidate.status": candidate.get("status"),
        "flywheel.candidate.qualified": verdict.qualified if verdict else None,
        "flywheel.candidate.reasons": _clip("; ".join(verdict.reasons), REASON_CHARS) if verdict and verdict.reasons
        else None,
        "flywheel.candidate.error": _clip(f"{failure['stage']}: {failure['error']}", REASON_CHARS) if failure else None,
    })
    client.set_terminated(run_id, RUN_STATUS.get(candidate.get("status") or "", "KILLED"), end_time=end)
    return run_id


def _eval_metrics(kind: str, evaluation: dict[str, Any] | None) -> Metrics:
    """Headline score, CI, latency and size of one evaluation; nothing for a failed or not-applicable one."""
    metric = (evaluation or {}).get("metric_name") or "score_vs_teacher"
    if not evaluation or not evaluation.get("applicable") or not _is_number(evaluation.get(metric)):
        return []
    ci = evaluation.get(f"{metric}_ci") or [None, None]
    latency = evaluation.get("latency") or {}
    return _numbers({
        f"{kind}.{metric}": evaluation.get(metric), f"{kind}.{metric}_ci_low": ci[0],
        f"{kind}.{metric}_ci_high": ci[-1], f"{kind}.latency_p50_ms": latency.get("p50_ms"),
        f"{kind}.latency_p95_ms": latency.get("p95_ms"), f"{kind}.model_size_bytes": evaluation.get("model_size_bytes"),
        f"{kind}.n": evaluation.get("n"),
    })


def _register(client: MlflowClient, model_name: str, view: dict[str, Any], decision: PromotionDecision,
              run_id: str) -> None:
    """A new version of the workload's registered model for the chosen student; aliases are the deployer's."""
    from mlflow.exceptions import MlflowException

    chosen = decision.chosen
    training = next(c for c in view["candidates"] if c["name"] == chosen).get("training") or {}
    try:
        client.get_registered_model(model_name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        client.create_registered_model(model_name)
    tags = {"artifact_id": decision.artifact_id or training.get("artifact_id"), "job_id": view["id"],
            "candidate": chosen, "path": training.get("path")}
    tags = {k: str(v) for k, v in tags.items() if v is not None}
    path = training.get("path")
    if path:
        try:
            client.create_model_version(model_name, path, run_id=run_id, tags=tags, await_creation_for=0)
            return
        except MlflowException as exc:
            # A tracking server only takes local sources inside the run's artifact directory.
            if exc.error_code != "INVALID_PARAMETER_VALUE":
                raise
            log.info("registry refused local source %s (%s); registering a runs:/ manifest instead", path, exc)
    client.log_dict(run_id, _manifest(tags, path), "model/manifest.json")
    client.create_model_version(model_name, f"runs:/{run_id}/model", run_id=run_id, tags=tags, await_creation_for=0)


def _manifest(tags: dict[str, str], path: str | None) -> dict[str, Any]:
    """Where the weights live (the artifact store keeps them; MLflow only points at them)."""
    root = Path(path or "")
    files = sorted(p for p in root.rglob("*") if p.is_file()) if path and root.is_dir() else []
    return {**tags, "files": [{"path": str(p.relative_to(root)), "size_bytes": p.stat().st_size} for p in files[:1000]]}


def _log(client: MlflowClient, run_id: str, *, metrics: Metrics | None = None, params: dict[str, Any] | None = None,
         tags: dict[str, Any] | None = None) -> None:
    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    metric_rows = [Metric(key, value, now, step) for key, value, step in metrics or []]
    param_rows = [Param(k, str(v)[:PARAM_CHARS]) for k, v in (params or {}).items() if v is not None]
    tag_rows = [RunTag(k, str(v)) for k, v in (tags or {}).items() if v is not None]
    for i in range(0, max(len(metric_rows), len(param_rows), len(tag_rows), 1), BATCH):
        client.log_batch(run_id, metrics=metric_rows[i:i + BATCH], params=param_rows[i:i + BATCH],
                         tags=tag_rows[i:i + BATCH], synchronous=True)


def _numbers(values: dict[str, Any]) -> Metrics:
    return [(key, float(value), 0) for key, value in values.items() if _is_number(value)]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _clip(text: str | None, limit: int) -> str | None:
    return text[:limit] if text is not None else None


def _span(view: dict[str, Any], candidate: str) -> tuple[int | None, int | None]:
    stages = [s for s in view.get("stages") or [] if s.get("candidate") == candidate]
    starts = [t for s in stages if (t := _ms(s.get("started_at"))) is not None]
    ends = [t for s in stages if (t := _ms(s.get("finished_at"))) is not None]
    return min(starts, default=None), max(ends, default=None)


def _ms(stamp: str | None) -> int | None:
    """Unix milliseconds of an ISO timestamp from the view, or None (MLflow then uses now)."""
    try:
        return int(datetime.fromisoformat(stamp).timestamp() * 1000) if stamp else None
    except ValueError:
        return None
