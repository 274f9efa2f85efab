"""`flywheel train` and `flywheel evaluate`: the model plane, standalone (no queue, no API)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from orchestrator.cli.commands_datasets import parse_assignments
from orchestrator.cli.output import CliState, emit, handles_errors, json_option
from services.domain.errors import InsufficientData

EVAL_KINDS = ("base", "icl", "customized")


@click.command("train")
@click.option("--dataset", "dataset_id", required=True, help="Dataset id (a unique prefix is enough).")
@click.option("--student", "candidate", required=True, help="Candidate name from config `candidates`.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a training setting for this run, e.g. --set max_steps=20 --set learning_rate=1e-4.")
@json_option
@handles_errors
@click.pass_obj
def train_command(state: CliState, dataset_id: str, candidate: str, overrides: tuple[str, ...], as_json: bool) -> None:
    """Train one student on a dataset and write a versioned artifact (adapter or model + metadata).

    Re-running the same command returns the finished artifact; a run that crashed or was
    interrupted resumes from its last checkpoint. Progress (steps, loss, examples/s, ETA) goes
    to stderr.
    """
    from tqdm import tqdm

    from services.customizer.service import train_candidate
    from services.models.training.base import TrainControl

    bar: Any = None

    def on_progress(progress: Any) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=progress.max_steps, desc=candidate, unit="step",
                       file=click.get_text_stream("stderr"))  # type: ignore[operator]  # deprecated in click: a module __getattr__
        bar.n = progress.step
        bar.set_postfix(loss=progress.loss, val=progress.val_loss, ex_s=progress.examples_per_s)
        bar.refresh()

    settings = state.settings
    values = {k.removeprefix("training."): v for k, v in parse_assignments(overrides).items()}
    try:
        artifact = train_candidate(settings, candidate, dataset_id, overrides=values or None,
                                   control=TrainControl(on_progress=on_progress, report_every_s=1.0))
    finally:
        if bar is not None:
            bar.close()
    if int(os.environ.get("RANK", "0")) != 0:
        return  # under torchrun / accelerate launch every rank trains; only rank 0 reports
    payload = artifact.model_dump(mode="json")

    def human() -> None:
        m = artifact.metrics
        click.echo(f"student {artifact.candidate} ({artifact.kind}) on dataset {artifact.dataset_id[:16]}")
        click.echo(f"  artifact {artifact.artifact_id[:16]}  {artifact.size_bytes / 2**20:.1f} MiB  {artifact.path}")
        click.echo(f"  steps {m['steps']}  train loss {_fmt(m.get('train_loss'))}  best val loss "
                   f"{_fmt(m.get('best_val_loss'))} (step {m.get('best_step')})  {m['examples_per_s']} examples/s"
                   + ("  stopped early" if m.get("stopped_early") else ""))

    emit(payload, as_json=as_json, human=human)


@click.command("evaluate")
@click.option("--dataset", "dataset_id", required=True, help="Dataset id (a unique prefix is enough).")
@click.option("--candidate", "candidate_spec", required=True, metavar="NAME[:ARTIFACT]",
              help="Candidate name; ':ARTIFACT' picks a trained artifact by id prefix or directory "
                   "(default: the newest one trained on this dataset).")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(EVAL_KINDS),
              help="Which evaluations (repeatable). Default: all three; those that do not apply say why.")
@json_option
@handles_errors
@click.pass_obj
def evaluate_command(state: CliState, dataset_id: str, candidate_spec: str, kinds: tuple[str, ...], as_json: bool) -> None:
    """Score a candidate against the teacher's answers on the dataset's eval split.

    Classification reports f1_vs_teacher with a bootstrap CI; other workloads score_vs_teacher.
    Latency (p50/p95 per request), throughput and model size are measured too.
    """
    from services.domain.evaluation import EvalKind
    from services.evaluator.runner import evaluate

    settings = state.settings
    name, _, artifact_ref = candidate_spec.partition(":")
    artifact = _artifact(Path(settings.artifacts.root), name, artifact_ref) if artifact_ref else None
    results = []
    for kind in kinds or EVAL_KINDS:
        results.append(evaluate(settings, candidate=name, dataset_id=dataset_id, kind=EvalKind(kind),
                                artifact=artifact))
    payload = {"candidate": name, "dataset_id": results[0].dataset_id,
               "evaluations": {r.eval_kind.value: r.to_public() for r in results}}

    def human() -> None:
        click.echo(f"candidate {name} on dataset {results[0].dataset_id[:16]}")
        for r in results:
            if not r.applicable:
                click.echo(f"  {r.eval_kind.value:<10} n/a: {r.reason}")
                continue
            ci = f"[{r.ci[0]:.3f}, {r.ci[1]:.3f}]" if r.ci else ""
            lat = f"p50 {r.latency.p50_ms:.1f} ms p95 {r.latency.p95_ms:.1f} ms" if r.latency else ""
            click.echo(f"  {r.eval_kind.value:<10} {r.metric_name} {r.score:.3f} {ci}  n={r.n} "
                       f"unparseable={r.unparseable}  {lat}" + (f"  ({r.decoding})" if r.decoding else ""))

    emit(payload, as_json=as_json, human=human)


def _artifact(root: Path, candidate: str, ref: str) -> Any:
    from services.domain.artifacts import find_artifacts, load_artifact

    if Path(ref).is_dir():
        return load_artifact(Path(ref))
    matches = [a for a in find_artifacts(root, candidate=candidate) if a.artifact_id.startswith(ref)]
    if len(matches) != 1:
        raise InsufficientData(f"{'no' if not matches else 'several'} artifacts of {candidate} match {ref!r}")
    return matches[0]


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


@click.command("decide")
@click.option("--dataset", "dataset_id", required=True, help="Dataset id whose saved evaluations to judge.")
@json_option
@handles_errors
@click.pass_obj
def decide_command(state: CliState, dataset_id: str, as_json: bool) -> None:
    """Apply the promotion policy to the saved customized evaluations of a dataset.

    Every candidate is judged on the lower bound of its score's CI, the class floors and the
    latency limit; qualifying ones are ranked by cost, latency and score. Prints the decision:
    the student to roll out (and how), or "keep the teacher", with the reason for every candidate.
    """
    from orchestrator.decision import decide
    from services.domain.datasets import load_dataset
    from services.domain.evaluation import EvalResult
    from services.domain.layout import ArtifactLayout

    settings = state.settings
    layout = ArtifactLayout(settings.artifacts.root)
    dataset = load_dataset(layout.datasets.root, dataset_id)
    saved = [EvalResult.model_validate_json(p.read_text("utf-8")) for p in layout.evaluation_files(dataset.dataset_id)]
    newest: dict[tuple[str, str], EvalResult] = {}
    for result in sorted(saved, key=lambda r: r.created_at):
        newest[(result.candidate, result.eval_kind.value)] = result  # a re-trained candidate: its latest run
    results = list(newest.values())
    workload_id = str(dataset.manifest["workload_id"])
    decision = decide(workload_id, results, settings.promotion_policy(workload_id), settings.pricing,
                      teacher_usage=_teacher_usage(dataset))

    def human() -> None:
        click.echo(decision.reason)
        for verdict in decision.verdicts:
            mark = "ok " if verdict.qualified else "no "
            click.echo(f"  {mark}{verdict.candidate}: " + ("; ".join(verdict.reasons) or "chosen"))

    emit(decision.model_dump(mode="json"), as_json=as_json, human=human)


def _teacher_usage(dataset: Any) -> Any:
    from orchestrator.decision import TeacherUsage
    from services.domain.datasets import teacher_usage

    usage = teacher_usage(dataset)
    return TeacherUsage(**usage) if usage else None
