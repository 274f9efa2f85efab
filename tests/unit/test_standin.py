"""The realistic stand-in: a simulated teacher wrong on a seeded share of records, with a confusable class,
mostly on ambiguous texts; a long class-defining system prompt; the CLI writes it."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.cli.main import cli
from services.datastore.standin import simulated_teacher_logs

FOLDER = Path(__file__).resolve().parents[2] / "data" / "twitter_financial_news_topic"


@pytest.fixture(scope="module")
def standin() -> tuple[list[dict], list[dict], dict]:  # type: ignore[type-arg]
    return simulated_teacher_logs(FOLDER, records=400, holdout=100, seed=3)


def _label(record: dict) -> str:  # type: ignore[type-arg]
    return record["response"]["choices"][0]["message"]["content"]


def test_the_teacher_is_wrong_on_the_stated_share_with_a_confusable_class(standin) -> None:  # type: ignore[no-untyped-def]
    import csv

    logs, later, summary = standin
    assert len(logs) == 400 and len(later) == 100 and summary["teacher_vs_human_agreement"] == 0.85
    labels = [line.strip() for line in (FOLDER / "label_names.txt").read_text().splitlines() if line.strip()]
    with (FOLDER / "topic_train.csv").open(encoding="utf-8", newline="") as handle:
        human = {row["text"]: f"[[[{labels[int(row['label'])]}]]]" for row in csv.DictReader(handle)}
    wrong = [r for r in logs + later if human[r["request"]["messages"][-1]["content"]] != _label(r)]
    assert len(wrong) == round(0.15 * 500), "exactly the seeded share"
    assert all(_label(r).strip("[]") in labels for r in wrong), "always another real class"
    assert later[0]["timestamp"] > logs[-1]["timestamp"], "later traffic comes after the logs"


def test_the_prompt_defines_every_class_and_the_seed_decides(standin) -> None:  # type: ignore[no-untyped-def]
    logs, _, summary = standin
    system = logs[0]["request"]["messages"][0]["content"]
    assert system.count("Examples:") == summary["labels"] == 20 and summary["system_prompt_chars"] > 4000
    again, _, _ = simulated_teacher_logs(FOLDER, records=400, holdout=100, seed=3)
    assert again == logs
    other, _, _ = simulated_teacher_logs(FOLDER, records=400, holdout=100, seed=4)
    assert other != logs


def test_noise_focus_puts_the_errors_on_ambiguous_texts() -> None:
    from services.datastore.standin import _rows, confusable_labels

    labels, rows = _rows(FOLDER, "train")
    _, ambiguity = confusable_labels([t for t, _ in rows], [y for _, y in rows])
    by_text = dict(zip([t for t, _ in rows], ambiguity, strict=True))

    def mean_ambiguity_of_errors(focus: float) -> float:
        logs, _, _ = simulated_teacher_logs(FOLDER, records=1000, noise_focus=focus, seed=1)
        human = {t: f"[[[{labels[y]}]]]" for t, y in rows}
        errors = [r for r in logs if _label(r) != human[r["request"]["messages"][-1]["content"]]]
        assert len(errors) == 150
        return sum(by_text[r["request"]["messages"][-1]["content"]] for r in errors) / len(errors)

    assert mean_ambiguity_of_errors(3.0) > mean_ambiguity_of_errors(0.0)


def test_the_cli_writes_logs_and_later_traffic(tmp_path: Path) -> None:
    out, later = tmp_path / "logs.jsonl.gz", tmp_path / "later.jsonl"
    result = CliRunner().invoke(cli, ["data", "standin", "--out", str(out), "--records", "30", "--later", str(later),
                                      "--later-records", "5", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["records"] == 30
    with gzip.open(out, "rt") as handle:
        assert sum(1 for _ in handle) == 30
    assert len(later.read_text().splitlines()) == 5
