"""`flywheel models list|fetch`: the offline model cache."""

from __future__ import annotations

import click

from orchestrator.cli.output import CliState, emit, handles_errors, json_option, log


@click.group("models", help="The model registry (config: models.registry) and its offline cache.")
def models_group() -> None:
    pass


@models_group.command("list")
@json_option
@handles_errors
@click.pass_obj
def models_list(state: CliState, as_json: bool) -> None:
    """Registry models, where their weights come from, and whether they are cached."""
    from services.models.cache import ModelCache

    rows = ModelCache(state.settings.models).list()

    def human() -> None:
        for r in rows:
            size = f"{r['size_bytes'] / 1e6:.0f} MB" if r["size_bytes"] else ""
            status = "fetched" if r["fetched"] else "not fetched"
            click.echo(f"{r['name']:<24} {r['kind']:<10} {r['source']:<9} {r['origin']!s:<24} {status:<12} {size}")

    emit(rows, as_json=as_json, human=human)


@models_group.command("fetch")
@click.argument("names", nargs=-1)
@click.option("--force", is_flag=True, help="Rebuild even if cached.")
@click.option("--no-forward", is_flag=True, help="Verify checksums only; skip the forward pass.")
@json_option
@handles_errors
@click.pass_obj
def models_fetch(state: CliState, names: tuple[str, ...], force: bool, no_forward: bool, as_json: bool) -> None:
    """Materialize NAMES (default: every registry model) into the cache as safetensors + tokenizer,
    then verify each: sha256 of every file and one forward pass. Cached models are only verified.
    """
    from services.models.cache import ModelCache

    cache = ModelCache(state.settings.models)
    results = []
    for name in names or sorted(state.settings.models.registry):
        log.warning("fetching %s ...", name)
        entry = cache.fetch(name, force=force, forward_pass=not no_forward)
        results.append(entry.to_json())

    def human() -> None:
        for r in results:
            v = r["verified"]
            forward = f", forward pass ok {v['output_shape']}" if "forward_pass" in v else ""
            click.echo(f"{r['name']}: {r['path']} ({r['size_bytes'] / 1e6:.0f} MB, sha256 ok{forward})")

    emit(results, as_json=as_json, human=human)
