"""`flywheel datasets build|list|show`: versioned datasets from stored teacher logs."""

from __future__ import annotations

from pathlib import Path

import click

from orchestrator.cli.output import CliState, emit, handles_errors, json_option
from services.datastore.datasets import list_datasets
from services.datastore.service import build_for_workload
from services.domain.datasets import datasets_root, load_dataset
from services.domain.errors import ConfigError
from services.domain.settings import Settings


def parse_assignments(items: tuple[str, ...]) -> dict[str, object]:
    """KEY=VALUE pairs; values are read as YAML scalars/flow (10, 0.2, true, [a, b])."""
    import yaml

    out: dict[str, object] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. data_split.eval_size=100")
        try:
            out[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML ({exc})") from None
    return out


def _root(settings: Settings) -> Path:
    return datasets_root(settings.artifacts.root)


@click.group("datasets", help="Build, list and inspect versioned datasets made from the teacher logs.")
def datasets_group() -> None:
    pass


@datasets_group.command("build")
@click.option("--workload", "workload_id", required=True, help="Workload id whose logs to use.")
@click.option("--client", "client_id", default=None, help="Only this client's logs (default: all clients).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a data setting for this build, e.g. --set data_split.eval_size=100 "
                   "(sections: data_split, datasets, icl, workloads). Repeatable.")
@json_option
@handles_errors
@click.pass_obj
def datasets_build(
    state: CliState, workload_id: str, client_id: str | None, overrides: tuple[str, ...], as_json: bool
) -> None:
    """Export the newest logs of a workload, redact PII, deduplicate, detect the workload type,
    parse labels, split eval/train/val (stratified, seeded), pick ICL examples, and store the
    splits content-addressed. The same logs and config give the same dataset id.
    """
    ref = build_for_workload(state.settings, workload_id=workload_id, client_id=client_id,
                             overrides=parse_assignments(overrides) if overrides else None)
    payload = {"dataset_id": ref.dataset_id,
               "splits": {k: {"sha256": v["sha256"], "count": v["count"]} for k, v in ref.splits.items()},
               "manifest": ref.manifest}

    def human() -> None:
        m = ref.manifest
        click.echo(f"dataset {ref.dataset_id[:16]}  workload {workload_id} ({m['workload_type']})")
        click.echo("  " + ", ".join(f"{k} {v}" for k, v in m["counts"].items()))
        click.echo(f"  redactions: {m['redactions']}")
        for name, split in ref.splits.items():
            click.echo(f"  {name:<9} {split['count']:>6} records  sha256 {split['sha256'][:16]}")
        if m["label_distribution"]:
            top = sorted(m["label_distribution"]["train"].items(), key=lambda kv: -kv[1])
            click.echo("  train labels: " + ", ".join(f"{k} {v}" for k, v in top))

    emit(payload, as_json=as_json, human=human)


@datasets_group.command("list")
@json_option
@handles_errors
@click.pass_obj
def datasets_list(state: CliState, as_json: bool) -> None:
    """Stored datasets, newest first."""
    rows = list_datasets(_root(state.settings))

    def human() -> None:
        for r in rows:
            click.echo(f"{r['dataset_id'][:16]}  {r['workload_id']:<16} {r['workload_type']:<14} "
                       f"train {r['counts']['train']} val {r['counts']['val']} eval {r['counts']['eval']}")
        if not rows:
            click.echo("no datasets yet: flywheel datasets build --workload W")

    emit(rows, as_json=as_json, human=human)


@datasets_group.command("show")
@click.argument("dataset_id")
@json_option
@handles_errors
@click.pass_obj
def datasets_show(state: CliState, dataset_id: str, as_json: bool) -> None:
    """The manifest and split files of DATASET_ID (a unique prefix is enough)."""
    ref = load_dataset(_root(state.settings), dataset_id)
    emit(ref.to_json(), as_json=as_json)
