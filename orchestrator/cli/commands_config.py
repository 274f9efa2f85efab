"""`flywheel config check|show`."""

from __future__ import annotations

import click
import yaml

from orchestrator.cli.output import CliState, emit, handles_errors, json_option


@click.group("config", help="Validate and inspect the configuration (config.yaml + FLYWHEEL__* env).")
def config_group() -> None:
    pass


@config_group.command("check")
@json_option
@handles_errors
@click.pass_obj
def config_check(state: CliState, as_json: bool) -> None:
    """Validate the configuration; exit 2 with one line per problem if it is invalid."""
    settings = state.settings
    candidates = [c.name for c in settings.candidates if c.enabled]
    payload = {
        "ok": True,
        "config": state.config_file,
        "log_store": settings.log_store.backend,
        "queue": settings.queue.backend,
        "candidates": candidates,
        "models": sorted(settings.models.registry),
    }
    emit(
        payload,
        as_json=as_json,
        human=lambda: click.echo(
            f"{state.config_file}: OK (log store {payload['log_store']}, queue {payload['queue']}, "
            f"candidates: {', '.join(candidates) or 'none'})"
        ),
    )


@config_group.command("show")
@json_option
@handles_errors
@click.pass_obj
def config_show(state: CliState, as_json: bool) -> None:
    """Print the effective configuration (defaults, file and env merged); secrets are masked."""
    masked = state.settings.masked()
    emit(masked, as_json=as_json, human=lambda: click.echo(yaml.safe_dump(masked, sort_keys=False)))
