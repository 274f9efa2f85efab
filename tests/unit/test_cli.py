"""The CLI contract: --help everywhere, --json gives exactly one JSON document, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.cli.main import cli
from tests.factories import chat_record_dict, jsonl

pytestmark = pytest.mark.usefixtures("isolated_env")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text("log_store: {sqlite_path: logs.sqlite}\nmodels: {cache_dir: models}\n")
    return path


def run(*args: str, config: Path | None = None):  # type: ignore[no-untyped-def]
    prefix = ["--config", str(config)] if config else []
    return CliRunner().invoke(cli, [*prefix, *args], catch_exceptions=False)


@pytest.mark.parametrize(
    "command",
    [[], ["config"], ["config", "check"], ["config", "show"], ["ingest"], ["logs"], ["logs", "stats"],
     ["logs", "quarantine"], ["data"], ["data", "convert"], ["data", "list"], ["models"], ["models", "list"],
     ["models", "fetch"], ["datasets"], ["datasets", "build"], ["datasets", "list"], ["datasets", "show"],
     ["train"], ["evaluate"], ["decide"], ["worker"]],
)
def test_every_command_explains_itself(command: list[str]) -> None:
    result = run(*command, "--help")
    assert result.exit_code == 0
    assert "Usage: " in result.stdout
    assert len(result.stdout.split("\n\n", 2)[1].strip()) > 20  # a real description, not just usage


def _one_json(stdout: str) -> object:
    return json.loads(stdout)  # raises if stdout holds anything but one JSON document


def test_ingest_json_contract_and_reingest(tmp_path: Path, config: Path) -> None:
    logs = tmp_path / "logs.jsonl"
    logs.write_bytes(jsonl(chat_record_dict(), chat_record_dict(timestamp=5), "{bad", "", "[]"))
    first = run("ingest", str(logs), "--json", config=config)
    assert first.exit_code == 0, first.output
    body = _one_json(first.stdout)
    assert {k: body[k] for k in ("read", "stored", "quarantined", "duplicates", "reasons")} == {
        "read": 4, "stored": 2, "quarantined": 2, "duplicates": 0,
        "reasons": {"invalid_json": 1, "not_an_object": 1},
    }
    again = _one_json(run("ingest", str(logs), "--json", config=config).stdout)
    assert (again["stored"], again["duplicates"], again["quarantined"]) == (0, 2, 2)


def test_logs_stats_and_quarantine(tmp_path: Path, config: Path) -> None:
    logs = tmp_path / "logs.jsonl"
    logs.write_bytes(jsonl(chat_record_dict(), chat_record_dict(client_id="b"), "{bad"))
    run("ingest", str(logs), config=config)
    stats = _one_json(run("logs", "stats", "--json", config=config).stdout)
    assert stats["records"] == 2
    assert [(w["workload_id"], w["client_id"], w["records"]) for w in stats["workloads"]] == [
        ("news_topic", "b", 1), ("news_topic", "desk-7", 1)
    ]
    assert stats["quarantine_reasons"] == {"invalid_json": 1}
    quarantined = _one_json(run("logs", "quarantine", "--json", config=config).stdout)
    assert quarantined[0]["line"] == 3 and quarantined[0]["reason"] == "invalid_json"
    assert quarantined[0]["excerpt"] == "{bad"
    human = run("logs", "quarantine", config=config)
    assert "logs.jsonl:3  invalid_json" in human.stdout


def test_unreadable_file_exits_1_with_json_still_on_stdout(tmp_path: Path, config: Path) -> None:
    result = run("ingest", str(tmp_path / "absent.jsonl"), "--json", config=config)
    assert result.exit_code == 1
    body = _one_json(result.stdout)
    assert body["errors"][0]["file"].endswith("absent.jsonl")
    assert "could not read" in result.stderr


def test_invalid_config_exits_2_with_a_json_error(tmp_path: Path) -> None:
    bad = tmp_path / "config.yaml"
    bad.write_text("lora: {rank: 0}\n")
    result = run("config", "check", "--json", config=bad)
    assert result.exit_code == 2
    error = _one_json(result.stdout)["error"]
    assert error["type"] == "ConfigError" and "lora.rank = 0" in error["message"]
    assert "lora.rank = 0" in run("config", "check", config=bad).stderr


def test_config_show_masks_secrets(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYWHEEL__TEACHER__API_KEY", "sk-live-123")
    result = run("config", "show", "--json", config=config)
    shown = _one_json(result.stdout)
    assert shown["teacher"]["api_key"] == "**********"
    assert "sk-live-123" not in result.output


def test_ingest_and_stats_on_the_opensearch_backend(tmp_path: Path, config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from osmem_server import OsmemServer

    logs = tmp_path / "logs.jsonl"
    logs.write_bytes(jsonl(chat_record_dict(), chat_record_dict(timestamp=5), chat_record_dict(client_id="b"), "{bad"))
    with OsmemServer.start() as server:
        monkeypatch.setenv("FLYWHEEL__LOG_STORE__BACKEND", "opensearch")
        monkeypatch.setenv("FLYWHEEL__LOG_STORE__URL", server.url)
        first = run("ingest", str(logs), "--json", config=config)
        assert first.exit_code == 0, first.output
        ingested = _one_json(first.stdout)
        assert (ingested["read"], ingested["stored"], ingested["quarantined"], ingested["duplicates"]) == (4, 3, 1, 0)
        again = _one_json(run("ingest", str(logs), "--json", config=config).stdout)
        assert (again["stored"], again["duplicates"], again["quarantined"]) == (0, 3, 1)
        result = run("logs", "stats", "--json", config=config)
        assert result.exit_code == 0, result.output
        stats = _one_json(result.stdout)
    assert stats["store"] == "opensearch"
    assert stats["records"] == 3
    assert {(w["client_id"], w["records"]) for w in stats["workloads"]} == {("desk-7", 2), ("b", 1)}
    assert (stats["quarantined"], stats["quarantine_reasons"]) == (1, {"invalid_json": 1})


def test_an_unreachable_search_backend_is_a_clear_run_time_failure(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYWHEEL__LOG_STORE__BACKEND", "opensearch")
    monkeypatch.setenv("FLYWHEEL__LOG_STORE__URL", "http://127.0.0.1:1")
    monkeypatch.setenv("FLYWHEEL__LOG_STORE__TIMEOUT_S", "2")
    result = run("logs", "stats", "--json", config=config)
    assert result.exit_code == 1
    error = _one_json(result.stdout)["error"]
    assert error["type"] == "StoreError" and "http://127.0.0.1:1" in error["message"]


def test_data_convert_then_ingest(tmp_path: Path, config: Path) -> None:
    out = tmp_path / "t.jsonl.gz"
    converted = _one_json(run("data", "convert", "twitter_topic", "--out", str(out), "--limit", "30", "--json").stdout)
    assert converted["records"] == 30 and converted["licence"] == "MIT"
    ingested = _one_json(run("ingest", str(out), "--json", config=config).stdout)
    assert (ingested["stored"], ingested["quarantined"]) == (30, 0)


def test_absent_non_commercial_dataset_is_skipped_with_a_message(tmp_path: Path) -> None:
    result = run("data", "convert", "phrasebank", "--out", str(tmp_path / "p.jsonl"), "--data-dir",
                 str(tmp_path / "nowhere"), "--json")
    assert result.exit_code == 0
    body = _one_json(result.stdout)
    assert body["skipped"] is True and "non-commercial" in body["reason"]
    assert not (tmp_path / "p.jsonl").exists()


def test_models_list_reports_registry_and_cache_state(config: Path) -> None:
    rows = _one_json(run("models", "list", "--json", config=config).stdout)
    assert {r["name"] for r in rows} == {"smollm2-135m-instruct", "minilm-l6", "mpnet-base"}
    assert all(r["fetched"] is False for r in rows)


def test_fetching_an_unknown_model_fails_with_the_known_names(config: Path) -> None:
    result = run("models", "fetch", "gpt-5", "--json", config=config)
    assert result.exit_code == 1
    assert "known: minilm-l6" in _one_json(result.stdout)["error"]["message"]


def test_store_flag_picks_another_store_for_one_command(tmp_path: Path, config: Path) -> None:
    from osmem_server import OsmemServer

    logs = tmp_path / "logs.jsonl"
    logs.write_bytes(jsonl(chat_record_dict(), "{bad"))
    other = tmp_path / "other.sqlite"
    assert _one_json(run("ingest", str(logs), "--store", f"sqlite:///{other}", "--json", config=config).stdout)["stored"] == 1
    assert other.exists()
    assert _one_json(run("logs", "stats", "--json", config=config).stdout)["records"] == 0  # configured store untouched
    with OsmemServer.start() as server:
        url = f"opensearch+{server.url}"
        assert _one_json(run("ingest", str(logs), "--store", url, "--json", config=config).stdout)["stored"] == 1
        stats = _one_json(run("logs", "stats", "--store", url, "--json", config=config).stdout)
        assert (stats["store"], stats["records"], stats["quarantined"]) == ("opensearch", 1, 1)
    bad = run("logs", "stats", "--store", "mongodb://x", "--json", config=config)
    assert bad.exit_code == 2 and "not a log-store URL" in _one_json(bad.stdout)["error"]["message"]


def test_datasets_build_list_show(tmp_path: Path, config: Path) -> None:
    out = tmp_path / "t.jsonl"
    run("data", "convert", "twitter_topic", "--out", str(out), "--limit", "400")
    run("ingest", str(out), config=config)
    config.write_text(config.read_text() + "data_split: {eval_size: 50, limit: 1000}\nartifacts: {root: art}\n")
    built = _one_json(run("datasets", "build", "--workload", "news_topic", "--json", config=config).stdout)
    assert set(built["splits"]) == {"train", "val", "eval", "icl_eval"}
    assert built["splits"]["eval"]["count"] == 50
    assert built["manifest"]["workload_type"] == "classification"
    listed = _one_json(run("datasets", "list", "--json", config=config).stdout)
    assert [d["dataset_id"] for d in listed] == [built["dataset_id"]]
    shown = _one_json(run("datasets", "show", built["dataset_id"][:12], "--json", config=config).stdout)
    assert shown["manifest"]["counts"] == built["manifest"]["counts"]
    smaller = _one_json(run("datasets", "build", "--workload", "news_topic", "--set", "data_split.eval_size=30",
                            "--json", config=config).stdout)
    assert smaller["splits"]["eval"]["count"] == 30 and smaller["dataset_id"] != built["dataset_id"]
    refused = run("datasets", "build", "--workload", "news_topic", "--set", "lora.rank=2", "--json", config=config)
    assert refused.exit_code == 2 and "not allowed here" in _one_json(refused.stdout)["error"]["message"]
    missing = run("datasets", "build", "--workload", "nope", "--json", config=config)
    assert missing.exit_code == 1 and "no records for workload 'nope'" in _one_json(missing.stdout)["error"]["message"]
