"""Run one candidate over a dataset's eval split and score it against the teacher's own answers.

Three evaluations per candidate: `base` (the untrained model), `icl` (the untrained model with
in-context examples from the train split) and `customized` (the trained student). Base and ICL
apply to causal-LM students only; for encoder and embedding students they are recorded as not
applicable, with the reason. Requests are answered one at a time so latency is per request, as
a gateway would see it; throughput is requests over wall time.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.domain.artifacts import StudentArtifact, find_artifacts
from services.domain.datasets import DatasetRef, datasets_root, load_dataset
from services.domain.errors import InsufficientData, ModelUnavailable
from services.domain.evaluation import EvalKind, EvalResult
from services.domain.labels import LabelParser, render_label
from services.domain.layout import ArtifactLayout
from services.domain.prompts import StaticPrompt, strip_static
from services.domain.settings import CandidateSettings, Settings
from services.domain.students import StudentKind, kind_spec
from services.evaluator.judge import JudgeClient
from services.evaluator.metrics.latency import latency_stats
from services.evaluator.scoring import judge_from_settings, score_predictions
from services.models.cache import ModelCache
from services.models.runtime.chat_format import content_text, last_user_text, parse_assistant_text
from services.models.runtime.students import load_runtime

log = logging.getLogger(__name__)
MAX_NEW_TOKENS_CAP = 512


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
        result = EvalResult.not_applicable(candidate, kind, dataset.dataset_id, sha, workload_type,  # type: ignore[arg-type]
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
    token = _DEADLINE.set(time.monotonic() + budget if budget else None)
    try:
        with torch_threads("serve"):  # requests are answered one at a time, as a gateway sees them
            return _evaluate_records(settings, root, dataset, spec, student.kind, kind, candidate, artifact,
                                     records, sha, cache, judge, on_progress)
    finally:
        _DEADLINE.reset(token)


def _evaluate_records(settings: Settings, root: Path, dataset: DatasetRef, spec: CandidateSettings,
                      student_kind: StudentKind, kind: EvalKind, candidate: str, artifact: StudentArtifact | None,
                      records: list[dict[str, Any]], sha: str, cache: ModelCache, judge: JudgeClient | None,
                      on_progress: Callable[[int, int], None] | None) -> EvalResult:
    workload_type = dataset.workload_type
    started = time.perf_counter()
    run = _Run(settings, dataset, spec, artifact, records, cache, on_progress)
    # Teacher vectors are the references of an embedding workload, whatever model answers (an untrained base
    # model is the baseline); chat workloads are answered as each kind serves them.
    answers = _embedding_outputs(run) if workload_type == "embedding" else ANSWERERS[student_kind](run)
    references, predictions, seconds = answers.references, answers.predictions, answers.seconds
    decoding, extra_metrics, confidences = answers.decoding, answers.extra, answers.confidences
    wall = time.perf_counter() - started
    if workload_type != "embedding" and len(predictions) < len(records):
        extra_metrics["stopped_by_budget"] = {
            "answered": len(predictions), "planned": len(records), "budget_s": settings.evaluation.stage_budget_s,
            "reason": "evaluation.stage_budget_s ran out: scored on the records answered so far"}
        log.warning("%s %s: the stage budget of %s s ran out after %d of %d records", candidate, kind.value,
                    settings.evaluation.stage_budget_s, len(predictions), len(records))
        records, references = records[:len(predictions)], references[:len(predictions)]
    scored = score_predictions(
        workload_type, references, predictions, settings.evaluation, judge,  # type: ignore[arg-type]
        requests=[r["request"]["messages"] for r in records] if workload_type == "chat" else None,
        matryoshka_dims=settings.distillation.matryoshka_dims if workload_type == "embedding" else (),
        seed=settings.evaluation.seed,
    )
    if confidences is not None and workload_type == "classification":
        extra_metrics["selective"] = _selective(settings, dataset, artifact if kind is EvalKind.CUSTOMIZED else None,
                                                confidences, [p == r for p, r in zip(predictions, references, strict=True)])
    result = EvalResult(
        candidate=candidate, eval_kind=kind, dataset_id=dataset.dataset_id, eval_sha256=sha,
        workload_type=workload_type,  # type: ignore[arg-type]
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


def stratified_sample(records: list[dict[str, Any]], n: int, *, seed: int) -> list[dict[str, Any]]:
    """`n` records drawn at random (seeded), in proportion to the teacher's answers (label, tool name, or
    kind of answer): a newest-first split cut at its head would hold one kind of record only."""
    import random
    from collections import defaultdict

    def stratum(record: dict[str, Any]) -> str:
        answer = _answer(record) if record.get("response", {}).get("choices") else {}
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


def _answer(record: dict[str, Any]) -> dict[str, Any]:
    return dict(record["response"]["choices"][0]["message"])


def _reference(record: dict[str, Any], workload_type: str, parser: LabelParser) -> Any:
    answer = _answer(record)
    if workload_type == "classification":
        return parser.parse(content_text(answer.get("content")))
    if workload_type == "tool_calling":
        return answer.get("tool_calls") or content_text(answer.get("content"))
    return content_text(answer.get("content"))


_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("evaluation_deadline", default=None)


def _timed(items: list[Any], fn: Callable[[Any], Any], on_progress: Callable[[int, int], None] | None) -> tuple[list[Any], list[float]]:
    """Answer each item one at a time (per-request latency); stop early when the stage's budget runs out."""
    outputs, seconds = [], []
    deadline = _DEADLINE.get()
    for index, item in enumerate(items):
        if deadline is not None and outputs and time.monotonic() > deadline:
            break
        started = time.perf_counter()
        outputs.append(fn(item))
        seconds.append(time.perf_counter() - started)
        if on_progress is not None and (index + 1) % 10 == 0:
            on_progress(index + 1, len(items))
    return outputs, seconds


@dataclass(frozen=True)
class _Run:
    """What an answerer needs to answer one evaluation's records."""

    settings: Settings
    dataset: DatasetRef
    spec: CandidateSettings
    artifact: StudentArtifact | None  # None: the untrained base model (base and ICL evaluations)
    records: list[dict[str, Any]]
    cache: ModelCache
    on_progress: Callable[[int, int], None] | None

    @property
    def workload_type(self) -> str:
        return self.dataset.workload_type

    def parser(self) -> LabelParser:
        return LabelParser(self.settings.workload(str(self.dataset.manifest["workload_id"])).label_pattern,
                           self.dataset.labels() or None)

    def runtime(self, kind: StudentKind) -> Any:
        artifact_dir = Path(self.artifact.path) if self.artifact is not None else None
        return load_runtime(kind, self.cache, base_model=self.spec.model, artifact_dir=artifact_dir)


@dataclass
class _Answers:
    """An answerer's outputs: a reference per record; predictions for the first records (all, unless the stage's
    budget ran out)."""

    references: Any
    predictions: Any
    seconds: list[float]
    confidences: list[float] | None = None  # one per prediction, for selective answering (classification)
    extra: dict[str, Any] = field(default_factory=dict)  # extra metrics
    decoding: str | None = None


def _causal_lm_outputs(run: _Run) -> _Answers:
    """A causal LM answers as it is served: label scoring (constrained) or generation; for a pruned student the
    extra metrics say what pruning saved."""
    from services.models.runtime.causal_lm import label_confidence

    records, artifact, workload_type, parser = run.records, run.artifact, run.workload_type, run.parser()
    references = [_reference(r, workload_type, parser) for r in records]
    decoding = run.settings.evaluation.decoding if workload_type == "classification" else "generate"
    runner = run.runtime(StudentKind.CAUSAL_LM_LORA)
    requests = [{"messages": pruned_messages(r["request"]["messages"], artifact), "tools": r["request"].get("tools")}
                for r in records]
    extra = _prompt_token_stats(records, requests, runner) if artifact is not None and artifact.prompt_tag else {}
    if workload_type == "classification" and decoding == "constrained":
        labels = run.dataset.labels()
        template = parser.first_template(content_text(_answer(r).get("content")) for r in records) or "{label}"
        answers = [render_label(template, label) for label in labels]
        scored, seconds = _timed(requests, lambda req: runner.score_labels(req["messages"], answers), run.on_progress)
        confidences = [label_confidence(scores, best) for best, scores in scored]
        return _Answers(references, [labels[best] for best, _ in scored], seconds, confidences, extra, decoding)
    budget = max(runner.count_tokens(json.dumps(_answer(r), ensure_ascii=False)) for r in records) + 16
    max_new = min(MAX_NEW_TOKENS_CAP, budget)
    texts, seconds = _timed(requests, lambda req: runner.generate([req], max_new_tokens=max_new)[0], run.on_progress)
    if workload_type == "classification":
        predictions: list[Any] = [parser.parse(t) for t in texts]
    elif workload_type == "tool_calling":
        predictions = [(m.get("tool_calls") or m.get("content") or "") for m in map(parse_assistant_text, texts)]
    else:
        predictions = texts
    return _Answers(references, predictions, seconds, None, extra, decoding)


def pruned_messages(messages: list[dict[str, Any]], artifact: StudentArtifact | None) -> list[dict[str, Any]]:
    """A pruned student is evaluated as it is served: the static prompt replaced by its tag (requests that do
    not carry it, which the gateway would send to the teacher, are evaluated whole). Base and ICL evaluations
    (no artifact) keep the full prompt: they need it."""
    if artifact is None or artifact.prompt_tag is None or artifact.static_prompt is None:
        return messages
    stripped = strip_static(messages, StaticPrompt.model_validate(artifact.static_prompt), artifact.prompt_tag)
    return stripped if stripped is not None else messages


def _prompt_token_stats(records: list[dict[str, Any]], requests: list[dict[str, Any]], runner: Any) -> dict[str, Any]:
    """What pruning saved, recorded with a pruned student's evaluation: mean prompt tokens per request as
    evaluated (and served) and as the teacher was sent them, and how many requests carried the static part."""
    full = [runner.count_tokens(runner.prompt(r["request"]["messages"], r["request"].get("tools"))) for r in records]
    evaluated = [runner.count_tokens(runner.prompt(q["messages"], q["tools"])) for q in requests]
    pruned = sum(q["messages"] is not r["request"]["messages"] for r, q in zip(records, requests, strict=True))
    return {"prompt_tokens": {"full_mean": round(sum(full) / len(full), 1),
                              "evaluated_mean": round(sum(evaluated) / len(evaluated), 1),
                              "pruned_requests": pruned, "requests": len(records)}}


def _classifier_outputs(run: _Run) -> _Answers:
    """An encoder classifier reads the last user turn; its head's probability is the confidence."""
    parser = run.parser()
    runner = run.runtime(StudentKind.ENCODER_CLASSIFIER)
    texts = [last_user_text(r["request"]["messages"]) for r in run.records]
    # Scored through the same parser as the teacher: the student's chat answer must parse too.
    answers, seconds = _timed(texts, lambda text: runner.answer([{"messages": [
        {"role": "user", "content": text}]}])[0], run.on_progress)
    return _Answers([_reference(r, run.workload_type, parser) for r in run.records],
                    [parser.parse(text) for text, _ in answers], seconds, [confidence for _, confidence in answers])


def _selective(settings: Settings, dataset: DatasetRef, artifact: StudentArtifact | None,
               confidences: list[float], agrees: list[bool]) -> dict[str, Any]:
    """The selective-answering block of a classification evaluation: a threshold chosen on the student's
    out-of-fold training predictions when it has them (else by fixed-sequence testing on the eval records),
    with coverage and served-share agreement measured on the eval records (services/evaluator/metrics/selective)."""
    from services.evaluator.metrics.selective import coverage_curve, selective_report
    from services.models.runtime.classifier import load_calibration

    policy = settings.promotion_policy(str(dataset.manifest["workload_id"]))
    calibration = load_calibration(Path(artifact.path)) if artifact is not None else None
    block = selective_report(calibration[:2] if calibration else None, (confidences, agrees),
                             min_agreement=policy.min_agreement, min_coverage=policy.min_coverage,
                             confidence=settings.evaluation.confidence)
    if calibration is not None:
        block["method"] = f"planned on {calibration[2]}; fixed-sequence testing on the eval split from there"
    return {**block, "curve": coverage_curve(confidences, agrees, points=10)}


def _embedding_outputs(run: _Run) -> _Answers:
    """Student vectors against the teacher's, per input text (the model: the artifact's, or the untrained base)."""
    import numpy as np

    from services.domain.embeddings import decode_embedding

    texts, teacher = [], []
    for record in run.records:
        inputs = record["request"]["input"]
        inputs = [inputs] if isinstance(inputs, str) else inputs
        for text, item in zip(inputs, record["response"]["data"], strict=False):
            if isinstance(text, str):
                texts.append(text)
                teacher.append(decode_embedding(item["embedding"]))
    if not texts:
        raise InsufficientData("the eval split holds no text inputs with teacher vectors")
    try:
        embedder = run.runtime(StudentKind.EMBEDDING_DISTILL)
    except OSError as exc:
        where = run.artifact.path if run.artifact is not None else run.spec.model
        raise ModelUnavailable(f"cannot load embedding student from {where}: {exc}") from exc
    vectors, seconds = _timed(texts, lambda text: embedder.encode([text])[0], run.on_progress)
    return _Answers(np.asarray(teacher, dtype=np.float32), np.asarray(vectors, dtype=np.float32), seconds)


# How each kind's student answers a chat workload's eval records (embedding workloads: `_embedding_outputs`).
ANSWERERS: dict[StudentKind, Callable[[_Run], _Answers]] = {
    StudentKind.CAUSAL_LM_LORA: _causal_lm_outputs,
    StudentKind.ENCODER_CLASSIFIER: _classifier_outputs,
    StudentKind.EMBEDDING_DISTILL: _embedding_outputs,
}


def _model_size(cache: ModelCache, spec: CandidateSettings, artifact: StudentArtifact | None) -> int | None:
    """Bytes a server must load: the base model plus a LoRA adapter, or the student's own files."""
    if artifact is not None and kind_spec(artifact.kind).weights == "model":
        return artifact.size_bytes
    cached = cache.cached(spec.model)
    base = cached.size_bytes if cached is not None else None
    if base is None:
        return None
    return base + (artifact.size_bytes if artifact is not None else 0)
