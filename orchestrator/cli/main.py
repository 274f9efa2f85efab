"""`flywheel`: the command line of the data-flywheel platform."""

from __future__ import annotations

import logging
import os

import click

from orchestrator.cli.commands_config import config_group
from orchestrator.cli.commands_data import data_group
from orchestrator.cli.commands_datasets import datasets_group
from orchestrator.cli.commands_jobs import jobs_group
from orchestrator.cli.commands_logs import ingest_command, logs_group
from orchestrator.cli.commands_models import models_group
from orchestrator.cli.commands_schedule import beat_command, schedule_group
from orchestrator.cli.commands_search import search_command
from orchestrator.cli.commands_serve import serve_group
from orchestrator.cli.commands_train import decide_command, evaluate_command, train_command
from orchestrator.cli.commands_worker import worker_command
from orchestrator.cli.output import CliState


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    help=(
        "Distil an expensive teacher LLM into small student models, from its own logged traffic.\n\n"
        "Typical first run (the embedded default needs no servers):\n\n"
        "\b\n"
        "  flywheel data convert twitter_topic --out var/demo/logs.jsonl.gz\n"
        "  flywheel ingest var/demo/logs.jsonl.gz\n"
        "  flywheel logs stats\n"
        "  flywheel models fetch\n"
        "  flywheel datasets build --workload news_topic\n"
        "  flywheel train --dataset ID --student minilm-classifier\n"
        "  flywheel evaluate --dataset ID --candidate minilm-classifier\n"
        "  flywheel decide --dataset ID\n\n"
        "or all of it as one job: flywheel jobs create --workload news_topic --wait\n\n"
        "Every command that reports takes --json: exactly one JSON document on stdout, "
        "progress and logs on stderr."
    ),
)
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False),
    default=None,
    help="Configuration file. Default: $FLYWHEEL_CONFIG, else ./config.yaml.",
)
@click.option("-v", "--verbose", count=True, help="More logging on stderr (-vv for debug).")
@click.version_option(package_name="flywheel", prog_name="flywheel")
@click.pass_context
def cli(ctx: click.Context, config: str | None, verbose: int) -> None:
    level = logging.WARNING - 10 * min(verbose + 1, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if verbose == 0:
        quiet_libraries()
    if not os.environ.get("FLYWHEEL_ALLOW_HUB"):
        # Offline by default: models come from the cache (`flywheel models fetch`), never a hub.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ctx.obj = CliState(config=config)


def quiet_libraries() -> None:
    """Library noise (transformers load reports and progress bars, deprecation and future warnings) stays
    off stderr unless --verbose: the user sees our progress lines, once per change."""
    import warnings

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning,ignore::DeprecationWarning,ignore::UserWarning")
    for category in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category)
    for name in ("transformers", "sentence_transformers", "accelerate", "peft", "huggingface_hub", "mlflow",
                 "alembic", "urllib3", "httpx", "celery", "kombu"):
        logging.getLogger(name).setLevel(logging.ERROR)


cli.add_command(config_group)
cli.add_command(ingest_command)
cli.add_command(search_command)
cli.add_command(logs_group)
cli.add_command(data_group)
cli.add_command(models_group)
cli.add_command(datasets_group)
cli.add_command(train_command)
cli.add_command(evaluate_command)
cli.add_command(decide_command)
cli.add_command(worker_command)
cli.add_command(jobs_group)
cli.add_command(serve_group)
cli.add_command(schedule_group)
cli.add_command(beat_command)


def main() -> None:
    cli(prog_name="flywheel")


if __name__ == "__main__":
    main()
