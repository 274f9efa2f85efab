"""`flywheel datasets build|list|show`: versioned datasets from stored teacher logs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from orchestrator.cli.output import CliState, emit, handles_errors, json_option, log
from services.datastore.datasets import build_dataset, list_datasets
from services.datastore.stores import open_log_store
from services.domain.datasets import load_dataset
from services.domain.errors import ConfigError
from services.domain.settings import Settings, apply_overrides

DATA_SECTIONS = ("data_split", "datasets", "icl", "workloads")


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
    return Path(settings.artifacts.root) / "datasets"


def _student_token_counter(settings: Settings) -> tuple[Callable[[str], int] | None, str]:
    """Count ICL tokens with the first causal-LM student's tokenizer, if it is in the cache."""
    from services.models.cache import ModelCache

    cache = ModelCache(settings.models)
    for candidate in settings.candidates:
        if candidate.enabled and candidate.kind == "causal_lm_lora" and cache.cached(candidate.model):
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(cache.path(candidate.model)))
            def count(text: str, tokenizer=tokenizer) -> int:  # type: ignore[no-untyped-def]
                return len(tokenizer.encode(text, add_special_tokens=False))

            return count, f"tokenizer:{candidate.model}"
    log.warning("no causal-LM student is fetched; ICL budget counted as characters/4 (run `flywheel models fetch`)")
    return None, "approx_chars_div_4"


def _embedder(settings: Settings) -> Callable[[list[str]], object] | None:
    """Sentence embeddings for semantic ICL selection, from the model cache."""
    if settings.icl.example_selection != "semantic_similarity":
        return None
    from sentence_transformers import SentenceTransformer

    from services.models.cache import ModelCache

    model = SentenceTransformer(str(ModelCache(settings.models).path(settings.icl.embedding_model)), device="cpu")
    return lambda texts: model.encode(texts, batch_size=64, show_progress_bar=len(texts) > 500)


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
    settings = state.settings
    if overrides:
        settings = apply_overrides(settings, parse_assignments(overrides), allowed=DATA_SECTIONS)
    store = open_log_store(settings.log_store, settings.ingest)
    counter, counter_name = _student_token_counter(settings)
    try:
        ref = build_dataset(store, settings, workload_id=workload_id, client_id=client_id, root=_root(settings),
                            count_tokens=counter, token_counter_name=counter_name, embed=_embedder(settings))
    finally:
        store.close()
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
    emit(rows, as_json=as_json, human=lambda: [
        click.echo(f"{r['dataset_id'][:16]}  {r['workload_id']:<16} {r['workload_type']:<14} "
                   f"train {r['counts']['train']} val {r['counts']['val']} eval {r['counts']['eval']}")
        for r in rows
    ] or click.echo("no datasets yet: flywheel datasets build --workload W"))


@datasets_group.command("show")
@click.argument("dataset_id")
@json_option
@handles_errors
@click.pass_obj
def datasets_show(state: CliState, dataset_id: str, as_json: bool) -> None:
    """The manifest and split files of DATASET_ID (a unique prefix is enough)."""
    ref = load_dataset(_root(state.settings), dataset_id)
    emit(ref.to_json(), as_json=as_json)
