"""What the pages show, read from the same public shapes the API returns (`job_view`, `job_summary`,
`workloads_summary`, the route history): pure functions from those dicts to rows and chart inputs.

Nothing here queries a store; the routes fetch exactly what the API fetches and pass it in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from orchestrator.dashboard.plots import CurvePoint, ScorePoint, TimelineBar

KINDS = ("base", "icl", "customized")
FINISHED = ("completed", "failed", "cancelled")


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # SQLite drops the zone; stored values are UTC


def headline(evaluation: dict[str, Any] | None) -> tuple[str | None, float | None, tuple[float, float] | None]:
    """(metric name, score, CI) of a public evaluation; Nones while it runs, failed or does not apply."""
    if not evaluation or evaluation.get("applicable") is False:
        return None, None, None
    name = evaluation.get("metric_name") or next(
        (m for m in ("f1_vs_teacher", "score_vs_teacher") if m in evaluation), None)
    if name is None or evaluation.get(name) is None:
        return name, None, None
    ci = evaluation.get(f"{name}_ci")
    return name, float(evaluation[name]), (float(ci[0]), float(ci[1])) if ci else None


def metric_of(views: Iterable[dict[str, Any]]) -> str:
    """The headline metric's name in these jobs (f1_vs_teacher for classification)."""
    for view in views:
        for candidate in view.get("candidates") or []:
            for kind in KINDS:
                name, _, _ = headline(candidate["evaluations"].get(kind))
                if name:
                    return name
    return "score vs teacher"


def train_size(view: dict[str, Any]) -> int | None:
    counts = (view.get("dataset") or {}).get("counts") or {}
    value = counts.get("train")
    return int(value) if value is not None else None


def score_points(view: dict[str, Any]) -> list[ScorePoint]:
    points = []
    for candidate in view.get("candidates") or []:
        for kind in KINDS:
            _, score, ci = headline(candidate["evaluations"].get(kind))
            if score is not None:
                points.append(ScorePoint(candidate["name"], kind, score, ci))
    return points


def evaluation_rows(view: dict[str, Any]) -> list[dict[str, Any]]:
    """One table row per candidate and evaluation kind: score, CI, n, latency, size, or why there is none."""
    rows = []
    for candidate in view.get("candidates") or []:
        for kind in KINDS:
            evaluation = candidate["evaluations"].get(kind) or {}
            _, score, ci = headline(evaluation)
            latency = evaluation.get("latency") or {}
            if evaluation.get("applicable") is False:
                note = evaluation.get("reason") or "not applicable"
            elif score is None:
                note = evaluation.get("error") or evaluation.get("status") or "not run"
            else:
                note = ""
            rows.append({"candidate": candidate["name"], "kind": kind, "score": score, "ci": ci,
                         "n": evaluation.get("n"), "unparseable": evaluation.get("unparseable"),
                         "p50_ms": latency.get("p50_ms"), "p95_ms": latency.get("p95_ms"),
                         "throughput_per_s": latency.get("throughput_per_s"),
                         "size_bytes": evaluation.get("model_size_bytes"), "note": note})
    return rows


def learning_curve_series(views: Sequence[dict[str, Any]]) -> dict[str, list[CurvePoint]]:
    """Per candidate, (training-set size, customized score with CI) over every job that has both."""
    series: dict[str, list[CurvePoint]] = {}
    for view in views:
        size = train_size(view)
        if size is None:
            continue
        for candidate in view.get("candidates") or []:
            _, score, ci = headline(candidate["evaluations"].get("customized"))
            if score is not None:
                series.setdefault(candidate["name"], []).append(
                    CurvePoint(float(size), score, ci, label=f"job {view['id'][:8]}"))
    return series


def confusions(view: dict[str, Any]) -> list[dict[str, Any]]:
    """Each candidate's confusion matrix from its customized evaluation (classification metrics)."""
    found = []
    for candidate in view.get("candidates") or []:
        evaluation = candidate["evaluations"].get("customized") or {}
        confusion = (evaluation.get("metrics") or {}).get("confusion")
        if confusion and confusion.get("labels"):
            found.append({"candidate": candidate["name"], "labels": confusion["labels"],
                          "matrix": confusion["matrix"], "unparseable": confusion.get("unparseable")})
    return found


def selective_rows(view: dict[str, Any]) -> list[dict[str, Any]]:
    """Each classification candidate's selective-answering block (threshold, coverage, agreement with its
    lower bound, how chosen) from its customized evaluation, with its coverage-agreement curve."""
    rows = []
    for candidate in view.get("candidates") or []:
        evaluation = candidate["evaluations"].get("customized") or {}
        block = (evaluation.get("metrics") or {}).get("selective")
        if block:
            rows.append({"candidate": candidate["name"], **block})
    return rows


def timeline_bars(view: dict[str, Any], *, now: datetime | None = None) -> list[TimelineBar]:
    """Stages as seconds since the job was created; a running stage ends now."""
    origin = parse_time(view.get("created_at"))
    if origin is None:
        return []
    now = now or datetime.now(UTC)
    bars = []
    for stage in view.get("stages") or []:
        started, finished = parse_time(stage.get("started_at")), parse_time(stage.get("finished_at"))
        start_s = (started - origin).total_seconds() if started else None
        end_s = (finished - origin).total_seconds() if finished else None
        if start_s is None:
            start_s = end_s  # finished without starting (cancelled while queued): a sliver at that moment
        elif end_s is None and stage["status"] == "running":
            end_s = (now - origin).total_seconds()
        label = stage["name"] + (f" · {stage['candidate']}" if stage.get("candidate") else "")
        bars.append(TimelineBar(label, stage["status"], start_s, end_s))
    return bars


def is_live(summaries: Iterable[dict[str, Any]]) -> bool:
    """Whether any job is still queued or running (the page then keeps itself fresh)."""
    return any(s["status"] not in FINISHED for s in summaries)


def training_rows(view: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for candidate in view.get("candidates") or []:
        training = candidate.get("training") or {}
        metrics = training.get("metrics") or {}
        rows.append({"candidate": candidate["name"], "status": training.get("status") or candidate["status"],
                     "artifact_id": training.get("artifact_id"), "size_bytes": training.get("size_bytes"),
                     "steps": metrics.get("steps"), "train_loss": metrics.get("train_loss"),
                     "best_val_loss": metrics.get("best_val_loss"),
                     "examples_per_s": metrics.get("examples_per_s"), "error": training.get("error"),
                     "prompt_tokens": prompt_tokens(metrics)})
    return rows


def prompt_tokens(metrics: dict[str, Any]) -> str:
    """Mean prompt tokens per request, and what pruning the static prompt saved (docs/token-efficiency.md)."""
    if metrics.get("pruned"):
        full, pruned = metrics.get("prompt_tokens_unpruned_mean"), metrics.get("prompt_tokens_pruned_mean")
        if full and pruned:
            return f"{pruned:g} (pruned from {full:g}: {full / pruned:.1f}x fewer)"
    mean = metrics.get("mean_input_tokens")
    return f"{mean:g} (full prompt)" if mean is not None else "—"
