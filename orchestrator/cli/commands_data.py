"""`flywheel data convert|list`: public labelled datasets -> teacher logs."""

from __future__ import annotations

import os
from pathlib import Path

import click

from orchestrator.cli.output import CliState, emit, handles_errors, json_option, log
from services.datastore.convert import DATASETS, convert, dataset_folder

SHARED_DATA_ENV = "FLYWHEEL_SHARED_DATA"


def _repo_data() -> Path:
    return Path(__file__).resolve().parents[2] / "data"


def _shared_data() -> Path:
    return Path(os.environ.get(SHARED_DATA_ENV) or _repo_data().parent.parent / "shared" / "data")


@click.group("data", help="Turn labelled public datasets into teacher logs for demos, tests and benchmarks.")
def data_group() -> None:
    pass


@data_group.command("list")
@json_option
def data_list(as_json: bool) -> None:
    """Datasets the converter knows, their licence and whether they are present here."""
    rows = []
    for name, info in DATASETS.items():
        folder = dataset_folder(name, repo_data=_repo_data(), shared_data=_shared_data())
        rows.append({"dataset": name, **info, "path": str(folder), "present": folder.is_dir()})

    def human() -> None:
        for r in rows:
            click.echo(f"{r['dataset']:<14} {'present' if r['present'] else 'absent ':<8} {r['licence']:<34} {r['description']}")

    emit(
        rows,
        as_json=as_json,
        human=human,
    )


@data_group.command("convert")
@click.argument("dataset", type=click.Choice(sorted(DATASETS)))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Output file; .jsonl or .jsonl.gz.")
@click.option("--workload-id", help="Workload id of the records (default: per dataset, e.g. news_topic).")
@click.option("--client-id", default="demo", show_default=True, help="Client id of the records.")
@click.option("--split", type=click.Choice(["train", "valid"]), default="train", show_default=True,
              help="Which split (twitter_topic only).")
@click.option("--limit", type=click.IntRange(min=1), help="Convert at most this many examples.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help=f"Folder holding the dataset folders (default: data/ for twitter_topic, "
                   f"${SHARED_DATA_ENV} or ../shared/data for the non-commercial sets).")
@json_option
@handles_errors
@click.pass_obj
def data_convert(
    state: CliState,
    dataset: str,
    out: Path,
    workload_id: str | None,
    client_id: str,
    split: str,
    limit: int | None,
    data_dir: Path | None,
    as_json: bool,
) -> None:
    """Write DATASET as teacher logs: a system prompt naming the classes, the text as the user
    turn, and the human label as the teacher's answer, written as [[[Label]]].

    A non-commercial dataset that is not present is skipped with a message (exit 0).
    """
    folder = (data_dir / DATASETS[dataset]["folder"]) if data_dir else dataset_folder(
        dataset, repo_data=_repo_data(), shared_data=_shared_data()
    )
    if not folder.is_dir():
        message = (
            f"{dataset} is not present at {folder}; it is {DATASETS[dataset]['licence']} and not shipped "
            f"with the repo. Point --data-dir or ${SHARED_DATA_ENV} at a folder holding it."
        )
        log.warning("skipped: %s", message)
        emit({"dataset": dataset, "skipped": True, "reason": message}, as_json=as_json,
             human=lambda: click.echo(f"skipped: {message}"))
        return
    summary = convert(
        dataset, folder=folder, out=out, workload_id=workload_id, client_id=client_id,
        split=split, limit=limit,  # type: ignore[arg-type]  # click.Choice has checked split; convert takes its Literal
    )
    summary["skipped"] = False
    emit(summary, as_json=as_json, human=lambda: click.echo(
        f"wrote {summary['records']} teacher logs of {dataset} ({summary['licence']}) to {out}: "
        f"workload {summary['workload_id']}, client {summary['client_id']}"
    ))


@data_group.command("standin")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Output file for the logs; .jsonl or .jsonl.gz.")
@click.option("--records", type=click.IntRange(min=10), default=2000, show_default=True,
              help="Logged records, like a workload's first weeks.")
@click.option("--later", "later_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write this many later records (--later-records) here, as new traffic to replay.")
@click.option("--later-records", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--noise", type=click.FloatRange(0, 0.9), default=0.15, show_default=True,
              help="Share of records the simulated teacher answers wrongly (with a confusable class).")
@click.option("--noise-focus", type=click.FloatRange(0, 10), default=3.0, show_default=True,
              help="How strongly its errors fall on ambiguous texts (0: uniformly at random; 3: a student learns "
                   "the teacher's errors as it would a real teacher's).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workload-id", default="news_topic", show_default=True)
@json_option
@handles_errors
def data_standin(out: Path, records: int, later_out: Path | None, later_records: int, noise: float,
                 noise_focus: float, seed: int, workload_id: str, as_json: bool) -> None:
    """Write a realistic stand-in for a team's teacher logs: Twitter topics (MIT, in data/) under a long
    class-defining system prompt, answered by a simulated teacher that is wrong like a real one (on a
    share of records, with the class a TF-IDF model confuses each text with; mostly on ambiguous texts)."""
    from services.datastore.convert import _write_jsonl
    from services.datastore.standin import simulated_teacher_logs

    logs, later, summary = simulated_teacher_logs(
        _repo_data() / DATASETS["twitter_topic"]["folder"], records=records,
        holdout=later_records if later_out else 0, noise=noise, noise_focus=noise_focus, seed=seed,
        workload_id=workload_id)
    _write_jsonl(out, logs)
    if later_out:
        _write_jsonl(later_out, later)
    summary = {**summary, "out": str(out), "later_out": str(later_out) if later_out else None}
    emit(summary, as_json=as_json, human=lambda: click.echo(
        f"wrote {records} stand-in teacher logs to {out} (teacher agrees with the human label on "
        f"{summary['teacher_vs_human_agreement']:.0%}; workload {workload_id})"
        + (f" and {later_records} later records to {later_out}" if later_out else "")))
