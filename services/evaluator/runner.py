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
from pathlib import Path
from typing import Any

from services.domain.artifacts import StudentArtifact, StudentKind, find_artifacts
from services.domain.datasets import DatasetRef, datasets_root, load_dataset
from services.domain.errors import InsufficientData, ModelUnavailable
from services.domain.evaluation import EvalKind, EvalResult
from services.domain.labels import LabelParser, render_label
from services.domain.prompts import StaticPrompt, strip_static
from services.domain.settings import CandidateSettings, Settings
from services.evaluator.judge import JudgeClient
from services.evaluator.metrics.latency import latency_stats
from services.evaluator.scoring import judge_from_settings, score_predictions
from services.models.cache import ModelCache
from services.models.runtime.chat_format import content_text, last_user_text, parse_assistant_text

log = logging.getLogger(__name__)
MAX_NEW_TOKENS_CAP = 512
NOT_APPLICABLE = {
    StudentKind.ENCODER_CLASSIFIER: "an encoder classifier has no trained head before customization, "
                                    "and no prompt to put examples in",
    StudentKind.EMBEDDING_DISTILL: "an embedding student takes no prompt, so base/ICL prompting does not apply; "
                                   "its untrained model is measured as the customized run's baseline instead",
}


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
    student_kind = StudentKind(spec.kind)
    split = "icl_eval" if kind is EvalKind.ICL else "eval"
    sha = dataset.splits.get(split, {}).get("sha256", "")
    workload_type = dataset.workload_type
    if kind is not EvalKind.CUSTOMIZED and student_kind is not StudentKind.CAUSAL_LM_LORA:
        result = EvalResult.not_applicable(candidate, kind, dataset.dataset_id, sha, workload_type,  # type: ignore[arg-type]
                                           f"{kind.value} evaluation does not apply: {NOT_APPLICABLE[student_kind]}")
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
            return _evaluate_records(settings, root, dataset, spec, student_kind, kind, candidate, artifact, records,
                                     sha, cache, judge, on_progress)
    finally:
        _DEADLINE.reset(token)


def _evaluate_records(settings: Settings, root: Path, dataset: DatasetRef, spec: CandidateSettings,
                      student_kind: StudentKind, kind: EvalKind, candidate: str, artifact: StudentArtifact | None,
                      records: list[dict[str, Any]], sha: str, cache: ModelCache, judge: JudgeClient | None,
                      on_progress: Callable[[int, int], None] | None) -> EvalResult:
    workload_type = dataset.workload_type
    started = time.perf_counter()
    decoding, extra_metrics, confidences = None, {}, None
    if workload_type == "embedding":
        references, predictions, seconds = _embedding_outputs(records, artifact, cache, spec, on_progress)
    else:
        parser = LabelParser(settings.workload(str(dataset.manifest["workload_id"])).label_pattern,
                             dataset.labels() or None)
        references = [_reference(r, workload_type, parser) for r in records]
        if student_kind is StudentKind.ENCODER_CLASSIFIER:
            predictions, seconds, confidences = _classifier_outputs(records, artifact, parser, on_progress)  # type: ignore[arg-type]
        else:
            decoding = settings.evaluation.decoding if workload_type == "classification" else "generate"
            predictions, seconds, extra_metrics = _causal_lm_outputs(records, workload_type, decoding, parser,
                                                                     dataset, cache, spec, artifact, on_progress)
            confidences = extra_metrics.pop("confidences", None)
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
    suffix = f"-{result.artifact_id[:12]}" if result.artifact_id else ""
    return root / "evaluations" / result.dataset_id[:16] / f"{result.candidate}-{result.eval_kind.value}{suffix}.json"


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


def _causal_lm_outputs(
    records: list[dict[str, Any]], workload_type: str, decoding: str, parser: LabelParser, dataset: DatasetRef,
    cache: ModelCache, spec: CandidateSettings, artifact: StudentArtifact | None,
    on_progress: Callable[[int, int], None] | None,
) -> tuple[list[Any], list[float], dict[str, Any]]:
    """(predictions, seconds per request, extra metrics: what pruning saved, for a pruned student)."""
    from services.models.runtime.causal_lm import CausalLMRunner, label_confidence

    adapter = Path(artifact.path) / "adapter" if artifact is not None else None
    runner = CausalLMRunner(cache.path(spec.model), adapter_path=adapter)
    requests = [{"messages": pruned_messages(r["request"]["messages"], artifact), "tools": r["request"].get("tools")}
                for r in records]
    extra = _prompt_token_stats(records, requests, runner) if artifact is not None and artifact.prompt_tag else {}
    if workload_type == "classification" and decoding == "constrained":
        labels = dataset.labels()
        template = parser.first_template(content_text(_answer(r).get("content")) for r in records) or "{label}"
        answers = [render_label(template, label) for label in labels]
        scored, seconds = _timed(requests, lambda req: runner.score_labels(req["messages"], answers), on_progress)
        confidences = [label_confidence(scores, best) for best, scores in scored]
        return [labels[best] for best, _ in scored], seconds, {**extra, "confidences": confidences}
    budget = max(runner.count_tokens(json.dumps(_answer(r), ensure_ascii=False)) for r in records) + 16
    max_new = min(MAX_NEW_TOKENS_CAP, budget)
    texts, seconds = _timed(requests, lambda req: runner.generate([req], max_new_tokens=max_new)[0], on_progress)
    if workload_type == "classification":
        return [parser.parse(t) for t in texts], seconds, extra
    if workload_type == "tool_calling":
        return [(m.get("tool_calls") or m.get("content") or "") for m in map(parse_assistant_text, texts)], seconds, extra
    return texts, seconds, extra


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


def _classifier_outputs(
    records: list[dict[str, Any]], artifact: StudentArtifact, parser: LabelParser,
    on_progress: Callable[[int, int], None] | None,
) -> tuple[list[Any], list[float], list[float]]:
    from services.models.runtime.classifier import ClassifierRunner

    runner = ClassifierRunner(Path(artifact.path) / "model")
    texts = [last_user_text(r["request"]["messages"]) for r in records]
    # Scored through the same parser as the teacher: the student's chat answer must parse too.
    answers, seconds = _timed(texts, lambda text: runner.answer([{"messages": [
        {"role": "user", "content": text}]}])[0], on_progress)
    return [parser.parse(text) for text, _ in answers], seconds, [confidence for _, confidence in answers]


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
                             min_agreement=policy.min_agreement, confidence=settings.evaluation.confidence)
    if calibration is not None:
        block["method"] = f"planned on {calibration[2]}; fixed-sequence testing on the eval split from there"
    return {**block, "curve": coverage_curve(confidences, agrees, points=10)}


def _embedding_outputs(
    records: list[dict[str, Any]], artifact: StudentArtifact | None, cache: ModelCache, spec: CandidateSettings,
    on_progress: Callable[[int, int], None] | None,
) -> tuple[Any, Any, list[float]]:
    import numpy as np

    from services.domain.embeddings import decode_embedding
    from services.models.runtime.embedder import Embedder

    texts, teacher = [], []
    for record in records:
        inputs = record["request"]["input"]
        inputs = [inputs] if isinstance(inputs, str) else inputs
        for text, item in zip(inputs, record["response"]["data"], strict=False):
            if isinstance(text, str):
                texts.append(text)
                teacher.append(decode_embedding(item["embedding"]))
    if not texts:
        raise InsufficientData("the eval split holds no text inputs with teacher vectors")
    path = Path(artifact.path) if artifact is not None else cache.path(spec.model)
    try:
        embedder = Embedder(path)
    except OSError as exc:
        raise ModelUnavailable(f"cannot load embedding student from {path}: {exc}") from exc
    vectors, seconds = _timed(texts, lambda text: embedder.encode([text])[0], on_progress)
    return np.asarray(teacher, dtype=np.float32), np.asarray(vectors, dtype=np.float32), seconds


def _model_size(cache: ModelCache, spec: CandidateSettings, artifact: StudentArtifact | None) -> int | None:
    """Bytes a server must load: the base model plus a LoRA adapter, or the student's own files."""
    if artifact is not None and artifact.kind is not StudentKind.CAUSAL_LM_LORA:
        return artifact.size_bytes
    cached = cache.cached(spec.model)
    base = cached.size_bytes if cached is not None else None
    if base is None:
        return None
    return base + (artifact.size_bytes if artifact is not None else 0)
