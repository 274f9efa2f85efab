"""`flywheel ingest` and `flywheel logs stats|quarantine`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from orchestrator.cli.output import EXIT_FAILED, CliState, F, emit, handles_errors, json_option
from services.datastore.ingest import ingest_files
from services.datastore.stores import LogStore, open_log_store, store_settings_from_url
from services.domain.records import QUARANTINE_REASONS
from services.domain.settings import LogStoreSettings


def store_option(func: F) -> F:
    return click.option(
        "--store",
        "store_url",
        default=None,
        help="Log store to use instead of the configured one: sqlite:///PATH, "
        "opensearch+http(s)://HOST:PORT or elasticsearch+http(s)://HOST:PORT.",
    )(func)


def _store_section(state: CliState, store_url: str | None) -> LogStoreSettings:
    base = state.settings.log_store
    return store_settings_from_url(store_url, base) if store_url else base


def _open_store(state: CliState, store_url: str | None) -> LogStore:
    return open_log_store(_store_section(state, store_url), state.settings.ingest)


@click.command("ingest")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@store_option
@json_option
@handles_errors
@click.pass_obj
def ingest_command(state: CliState, files: tuple[Path, ...], store_url: str | None, as_json: bool) -> None:
    """Ingest teacher logs from JSONL or JSONL.gz FILES into the log store.

    Every non-blank line is stored, counted as a duplicate (its record id is already stored or
    appeared earlier in this run) or quarantined with a reason (see `flywheel logs quarantine`).
    Re-ingesting a file stores nothing new. Exit status 0 when every file was read, whatever it
    contained; 1 when a file could not be read or the store failed.
    """
    settings = state.settings
    store = _open_store(state, store_url)
    bars: dict[Path, tqdm] = {}

    def progress(path: Path, done: int, total: int) -> None:
        bar = bars.get(path)
        if bar is None:
            bar = bars[path] = tqdm(
                total=total, unit="B", unit_scale=True, desc=path.name, file=sys.stderr, disable=None, leave=False
            )
        bar.update(done - bar.n)

    try:
        summary = ingest_files(
            files,
            store=store,
            max_record_bytes=settings.ingest.max_record_bytes,
            batch_size=settings.ingest.batch_size,
            on_progress=progress,
            pause_gc=True,
        )
    finally:
        for bar in bars.values():
            bar.close()
        store.close()
    for error in summary.errors:
        click.secho(f"error: could not read {error['file']}: {error['error']}", fg="red", err=True)

    def human() -> None:
        click.echo(
            f"read {summary.read} lines: stored {summary.stored}, duplicates {summary.duplicates}, "
            f"quarantined {summary.quarantined}"
        )
        for reason, count in sorted(summary.reasons.items()):
            click.echo(f"  quarantined {reason}: {count}")
        if summary.quarantined:
            click.echo("  see them with: flywheel logs quarantine")

    emit(summary.to_json(), as_json=as_json, human=human)
    if summary.errors:
        sys.exit(EXIT_FAILED)


@click.group("logs", help="Inspect the log store: counts per workload/client, quarantined lines.")
def logs_group() -> None:
    pass


@logs_group.command("stats")
@store_option
@json_option
@handles_errors
@click.pass_obj
def logs_stats(state: CliState, store_url: str | None, as_json: bool) -> None:
    """Records per workload and client, and quarantined lines per reason."""
    store = _open_store(state, store_url)
    try:
        counts = store.counts()
        reasons = store.quarantine_counts()
    finally:
        store.close()
    payload = {
        "store": _store_section(state, store_url).backend,
        "records": sum(c.records for c in counts),
        "workloads": [
            {
                "workload_id": c.workload_id,
                "client_id": c.client_id,
                "records": c.records,
                "first_timestamp": c.first_timestamp,
                "last_timestamp": c.last_timestamp,
            }
            for c in counts
        ],
        "quarantined": sum(reasons.values()),
        "quarantine_reasons": reasons,
    }

    def human() -> None:
        click.echo(f"{payload['records']} records in the {payload['store']} log store")
        if counts:
            width = max(len(c.workload_id) for c in counts)
            click.echo(f"  {'workload'.ljust(width)}  {'client':<16} {'records':>9}")
            for c in counts:
                click.echo(f"  {c.workload_id.ljust(width)}  {c.client_id:<16} {c.records:>9}")
        click.echo(f"{payload['quarantined']} quarantined lines")
        for reason, n in reasons.items():
            click.echo(f"  {reason:<26} {n:>9}")

    emit(payload, as_json=as_json, human=human)


@logs_group.command("quarantine")
@click.option("--reason", type=click.Choice(sorted(QUARANTINE_REASONS)), help="Only lines with this reason.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="At most this many.")
@store_option
@json_option
@handles_errors
@click.pass_obj
def logs_quarantine(state: CliState, reason: str | None, limit: int, store_url: str | None, as_json: bool) -> None:
    """List quarantined lines, newest first: file, line number, reason, detail and the line's start."""
    store = _open_store(state, store_url)
    try:
        entries = list(store.quarantined(reason=reason, limit=limit))
    finally:
        store.close()
    payload: list[dict[str, Any]] = [
        {
            "source": e.source,
            "file_sha256": e.file_sha256,
            "line": e.line,
            "reason": e.reason,
            "detail": e.detail,
            "size_bytes": e.size_bytes,
            "received_at": e.received_at,
            "excerpt": e.raw[:200].decode("utf-8", errors="replace"),
        }
        for e in entries
    ]

    def human() -> None:
        if not payload:
            click.echo("no quarantined lines")
        for item in payload:
            click.echo(f"{item['source']}:{item['line']}  {item['reason']}  {item['detail']}")
            click.echo(f"    {item['excerpt'][:120]!r}")

    emit(payload, as_json=as_json, human=human)
