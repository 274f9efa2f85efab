"""CLI plumbing shared by every subcommand: settings, --json output, errors, exit codes.

Contract (docs/contracts.md): with --json exactly one JSON document goes to stdout, also on
failure ({"error": {...}}); progress and logs always go to stderr.
Exit codes: 0 done, 1 failed at run time (unreadable file, store, model), 2 usage or config error.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar, cast

import click

from services.domain.errors import ConfigError, FlywheelError
from services.domain.settings import Settings, config_path, load_settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
log = logging.getLogger("flywheel")

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class CliState:
    config: str | None
    _settings: Settings | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config)
        return self._settings

    @property
    def config_file(self) -> str:
        return str(config_path(self.config))


def json_option(func: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print exactly one JSON document to stdout (logs go to stderr)."
    )(func)


def emit(payload: Any, *, as_json: bool, human: Callable[[], None] | None = None) -> None:
    """Print the command's result: JSON on stdout, or the human rendering."""
    if as_json:
        sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n")
        sys.stdout.flush()
    elif human is not None:
        human()
    else:
        click.echo(json.dumps(payload, indent=2, ensure_ascii=False, default=str))


def fail(message: str, *, as_json: bool, code: int = EXIT_FAILED, kind: str = "error") -> NoReturn:
    if as_json:
        emit({"error": {"type": kind, "message": message}}, as_json=True)
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


def handles_errors(func: F) -> F:
    """Turn domain errors into a clear message and the contract's exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = bool(kwargs.get("as_json"))
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            fail(str(exc), as_json=as_json, code=EXIT_USAGE, kind="ConfigError")
        except FlywheelError as exc:
            fail(str(exc), as_json=as_json, code=EXIT_FAILED, kind=type(exc).__name__)

    return cast(F, wrapper)  # functools.wraps keeps func's signature
