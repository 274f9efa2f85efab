"""Run one candidate over a dataset's eval split and score it against the teacher's own answers.

Three evaluations per candidate: `base` (the untrained model), `icl` (the untrained model with
in-context examples from the train split) and `customized` (the trained student). Base and ICL
apply to causal-LM students only; for encoder and embedding students they are recorded as not
applicable, with the reason. Requests are answered one at a time so latency is per request, as
a gateway would see it; throughput is requests over wall time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from services.domain.artifacts import StudentArtifact, find_artifacts
from services.domain.datasets import DatasetRef, datasets_root, load_dataset
from services.domain.errors import InsufficientData
from services.domain.evaluation import EvalKind, EvalResult
from services.domain.layout import ArtifactLayout
from services.domain.settings import CandidateSettings, Settings
from services.evaluator.futility import FUTILE_WORKLOADS, futility_rule
from services.evaluator.judge import JudgeClient
from services.evaluator.metrics.latency import latency_stats
from services.evaluator.scoring import judge_from_settings, score_predictions
from services.models.cache import ModelCache
from services.models.runtime.chat_format import content_text
from services.models.students.answering import DEADLINE, EvalRun, answer_of, embedding_outputs, reference
from services.models.students.registry import answerer_for, kind_spec, load_runtime

log = logging.getLogger(__name__)


def evaluate(
    settings: Settings,
    *,
    candidate: str,
    dataset_id: str,
    kind: EvalKind,
    artifact: StudentArtifact | None = None,
    judge: JudgeClient | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """Evaluate `candidate` (`kind`: base, icl or customized) on the dataset's eval split; save and return the result."""
    root = Path(settings.artifacts.root)
    dataset = load_dataset(datasets_root(root), dataset_id)
    spec = settings.candidate(candidate)
    student = kind_spec(spec.kind)
    split = "icl_eval" if kind is EvalKind.ICL else "eval"
    sha = dataset.splits.get(split, {}).get("sha256", "")
    workload_type = dataset.workload_type
    if kind is not EvalKind.CUSTOMIZED and student.no_baseline is not None:
        # An embedding dataset has no icl_eval split: the record names the eval split it would have used.
        sha = sha or dataset.splits.get("eval", {}).get("sha256", "")
        result = EvalResult.not_applicable(candidate, kind, dataset.dataset_id, sha, workload_type,  # type: ignore[arg-type]  # a manifest's workload_type is a record type (checked at build)
                                           f"{kind.value} evaluation does not apply: {student.no_baseline}")
        return _save(root, result)
    if kind is EvalKind.CUSTOMIZED and artifact is None:
        found = find_artifacts(root, candidate=candidate, dataset_id=dataset.dataset_id)
        if not found:
            raise InsufficientData(f"{candidate} has no trained artifact for dataset {dataset.dataset_id[:12]}; "
                                   f"run `flywheel train --dataset {dataset.dataset_id[:12]} --student {candidate}`")
        artifact = found[0]
    records = list(dataset.read_split(split))
    if settings.evaluation.max_eval_records and len(records) > settings.evaluation.max_eval_records:
        records = stratified_sample(records, settings.evaluation.max_eval_records, seed=settings.evaluation.seed)
    cap = settings.evaluation.baseline_max_records
    if kind is not EvalKind.CUSTOMIZED and cap and len(records) > cap:
        # Base and ICL evaluations are baselines the decision never promotes: a stratified sample measures them
        # (a 135M causal LM under a 1,200-token prompt takes seconds a request on CPU).
        log.info("%s %s: a stratified sample of %d of %d records (evaluation.baseline_max_records)",
                 candidate, kind.value, cap, len(records))
        records = stratified_sample(records, cap, seed=settings.evaluation.seed)
    if not records:
        raise InsufficientData(f"dataset {dataset.dataset_id[:12]} has an empty {split} split")
    cache = ModelCache(settings.models)
    judge = judge or judge_from_settings(settings.evaluation)

    from services.models.runtime.threads import torch_threads

    budget = settings.evaluation.stage_budget_s
    token = DEADLINE.set(time.monotonic() + budget if budget else None)
    try:
        with torch_threads("serve"):  # requests are answered one at a time, as a gateway sees them
            return _evaluate_records(settings, root, dataset, spec, student.kind, kind, candidate, artifact,
                                     records, sha, cache, judge, on_progress)
    finally:
        DEADLINE.reset(token)


def _evaluate_records(settings: Settings, root: Path, dataset: DatasetRef, spec: CandidateSettings,
                      student_kind: str, kind: EvalKind, candidate: str, artifact: StudentArtifact | None,
                      records: list[dict[str, Any]], sha: str, cache: ModelCache, judge: JudgeClient | None,
                      on_progress: Callable[[int, int], None] | None) -> EvalResult:
    workload_type = dataset.workload_type
    started = time.perf_counter()
    run = EvalRun(settings, dataset, spec, artifact, records, cache, on_progress, loader=load_any)
    futile = None
    if kind is EvalKind.CUSTOMIZED and workload_type in FUTILE_WORKLOADS:
        # A student that provably cannot qualify stops early (services/evaluator/futility.py).
        parser = run.parser()
        futile = futility_rule(workload_type, [reference(r, workload_type, parser) for r in records],
                               settings.promotion_policy(str(dataset.manifest["workload_id"])), settings.evaluation)
        run = replace(run, futile=futile, futility_every=settings.evaluation.futility_every)
    # Teacher vectors are the references of an embedding workload, whatever model answers (an untrained base
    # model is the baseline); chat workloads are answered as each kind serves them.
    answers = embedding_outputs(run) if workload_type == "embedding" else answerer_for(student_kind)(run)
    references, predictions, seconds = answers.references, answers.predictions, answers.seconds
    decoding, extra_metrics, confidences = answers.decoding, answers.extra, answers.confidences
    wall = time.perf_counter() - started
    if futile is not None and futile.verdict is not None:
        extra_metrics["stopped_early"] = futile.verdict
        log.info("%s %s: %s", candidate, kind.value, futile.verdict["reason"])
        records, references = records[:len(predictions)], references[:len(predictions)]
    elif workload_type != "embedding" and len(predictions) < len(records):
        extra_metrics["stopped_by_budget"] = {
            "answered": len(predictions), "planned": len(records), "budget_s": settings.evaluation.stage_budget_s,
            "reason": "evaluation.stage_budget_s ran out: scored on the records answered so far"}
        log.warning("%s %s: the stage budget of %s s ran out after %d of %d records", candidate, kind.value,
                    settings.evaluation.stage_budget_s, len(predictions), len(records))
        records, references = records[:len(predictions)], references[:len(predictions)]
    scored = score_predictions(
        workload_type, references, predictions, settings.evaluation, judge,  # type: ignore[arg-type]  # a manifest's workload_type is a record type
        requests=[r["request"]["messages"] for r in records] if workload_type == "chat" else None,
        matryoshka_dims=settings.distillation.matryoshka_dims if workload_type == "embedding" else (),
        roles=answers.roles, texts=answers.texts, seed=settings.evaluation.seed,
        grades_dir=ArtifactLayout(settings.artifacts.root).evaluations(dataset.dataset_id) / "relevance-grades",
    )
    if confidences is not None and workload_type == "classification":
        extra_metrics["selective"] = _selective(settings, dataset, artifact if kind is EvalKind.CUSTOMIZED else None,
                                                confidences, [p == r for p, r in zip(predictions, references, strict=True)])
    result = EvalResult(
        candidate=candidate, eval_kind=kind, dataset_id=dataset.dataset_id, eval_sha256=sha,
        workload_type=workload_type,
        metric_name=scored.metric_name, score=scored.score, ci=scored.ci, n=len(records),
        unparseable=scored.unparseable, decoding=decoding,
        metrics={**scored.metrics, **extra_metrics},
        latency=latency_stats(seconds, wall_s=wall),
        model_size_bytes=_model_size(cache, spec, artifact if kind is EvalKind.CUSTOMIZED else None),
        artifact_id=artifact.artifact_id if artifact is not None and kind is EvalKind.CUSTOMIZED else None,
    )
    log.info("%s %s: %s = %s (n=%d, p50 %.1f ms)", candidate, kind.value, result.metric_name, result.score,
             result.n, result.latency.p50_ms if result.latency else float("nan"))
    return _save(root, result)


def load_any(kind: str, cache: ModelCache, base: str, path: Path | None) -> Any:
    """The registry's loader, in the shape `EvalRun` takes."""
    return load_runtime(kind, cache, base_model=base, artifact_dir=path)


def stratified_sample(records: list[dict[str, Any]], n: int, *, seed: int) -> list[dict[str, Any]]:
    """`n` records drawn at random (seeded), in proportion to the teacher's answers (label, tool name, or
    kind of answer): a newest-first split cut at its head would hold one kind of record only."""
    import random
    from collections import defaultdict

    def stratum(record: dict[str, Any]) -> str:
        answer = answer_of(record) if record.get("response", {}).get("choices") else {}
        calls = answer.get("tool_calls") or []
        if calls:
            return "tool:" + ",".join(sorted(str((c.get("function") or {}).get("name")) for c in calls))
        return "text:" + content_text(answer.get("content"))[:64]

    groups: dict[str, list[int]] = defaultdict(list)
    for index, record in enumerate(records):
        groups[stratum(record)].append(index)
    rng = random.Random(seed)
    chosen: list[int] = []
    quotas = {key: len(rows) * n / len(records) for key, rows in groups.items()}
    for key, rows in groups.items():
        chosen += rng.sample(rows, int(quotas[key]))
    taken = set(chosen)
    rest = [i for i in range(len(records)) if i not in taken]
    chosen += rng.sample(rest, n - len(chosen))  # the fractional parts, at random
    return [records[i] for i in sorted(chosen)]


def result_path(root: Path, result: EvalResult) -> Path:
    """Where a result is saved; customized results name their artifact (several may share a dataset)."""
    return ArtifactLayout(root).evaluation(result.dataset_id, candidate=result.candidate, kind=result.eval_kind.value,
                                           artifact_id=result.artifact_id)


def _save(root: Path, result: EvalResult) -> EvalResult:
    path = result_path(root, result)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(result.model_dump_json(indent=2), encoding="utf-8")
    partial.replace(path)
    return result


def _selective(settings: Settings, dataset: DatasetRef, artifact: StudentArtifact | None,
               confidences: list[float], agrees: list[bool]) -> dict[str, Any]:
    """The selective-answering block of a classification evaluation: a threshold chosen on the student's
    out-of-fold training predictions when it has them (else by fixed-sequence testing on the eval records),
    with coverage and served-share agreement measured on the eval records (services/evaluator/metrics/selective)."""
    from services.evaluator.metrics.selective import coverage_curve, selective_report
    from services.models.students.encoder_classifier.runtime import load_calibration

    policy = settings.promotion_policy(str(dataset.manifest["workload_id"]))
    calibration = load_calibration(Path(artifact.path)) if artifact is not None else None
    block = selective_report(calibration[:2] if calibration else None, (confidences, agrees),
                             min_agreement=policy.min_agreement, min_coverage=policy.min_coverage,
                             confidence=settings.evaluation.confidence)
    if calibration is not None:
        block["method"] = f"planned on {calibration[2]}; fixed-sequence testing on the eval split from there"
    return {**block, "curve": coverage_curve(confidences, agrees, points=10)}


def _model_size(cache: ModelCache, spec: CandidateSettings, artifact: StudentArtifact | None) -> int | None:
    """Bytes a server must load: the base model plus a LoRA adapter, or the student's own files."""
    if artifact is not None and kind_spec(artifact.kind).weights == "model":
        return artifact.size_bytes
    cached = cache.cached(spec.model)
    base = cached.size_bytes if cached is not None else None
    if base is None:
        return None
    return base + (artifact.size_bytes if artifact is not None else 0)
