"""Dataset build end to end on a real SQLite store: manifest, splits, determinism, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.datastore.datasets import build_dataset, list_datasets
from services.datastore.stores.sqlite import SqliteLogStore
from services.domain.datasets import load_dataset
from services.domain.errors import InsufficientData
from services.domain.records import LogRecord
from services.domain.settings import DataSplitSettings, Settings
from tests.factories import chat_record_dict, tool_record_dict

LABELS = ["Earnings", "Macro", "IPO"]


def _classification(i: int, label: str) -> LogRecord:
    data = chat_record_dict(timestamp=1_760_000_000 + i, client_id="desk")
    data["request"]["messages"][1]["content"] = f"headline {i} call jane{i}@corp.com"
    data["response"]["choices"][0]["message"]["content"] = f"[[[{label}]]]"
    return LogRecord.model_validate(data)


@pytest.fixture
def store(tmp_path: Path):
    with SqliteLogStore(tmp_path / "logs.sqlite") as store:
        records = [_classification(i, LABELS[i % 3] if i % 10 else "IPO") for i in range(120)]
        records.append(LogRecord.model_validate({**records[0].model_dump(exclude_unset=True), "timestamp": 5}))  # dup
        bad = chat_record_dict(timestamp=1_770_000_000)
        bad["response"]["choices"][0]["message"]["content"] = "probably earnings"
        records.append(LogRecord.model_validate(bad))
        store.write(records)
        yield store


def _settings() -> Settings:
    return Settings(data_split=DataSplitSettings(eval_size=20, val_ratio=0.1, min_total_records=50, limit=None))


def test_build_writes_splits_and_a_manifest(store: SqliteLogStore, tmp_path: Path) -> None:
    ref = build_dataset(store, _settings(), workload_id="news_topic", client_id=None, root=tmp_path / "ds")
    m = ref.manifest
    assert m["workload_type"] == "classification"
    assert m["counts"] == {"exported": 122, "duplicates_removed": 1, "unparsed_answers": 1, "usable": 120,
                           "eval": 20, "train": 90, "val": 10}
    assert m["redactions"]["counts"] == {"email": 121}  # the duplicate is redacted before dedup removes it
    assert m["unparsed_answers"]["count"] == 1
    assert set(m["label_distribution"]["eval"]) == set(LABELS)
    train_lines = [json.loads(x) for x in Path(ref.splits["train"]["path"]).read_text().splitlines()]
    assert len(train_lines) == 90
    assert train_lines[0]["messages"][-1]["role"] == "assistant"
    assert all("@corp.com" not in json.dumps(x) for x in train_lines)
    icl = [json.loads(x) for x in Path(ref.splits["icl_eval"]["path"]).read_text().splitlines()]
    assert len(icl[0]["request"]["messages"]) > 2
    assert ref.splits["eval"]["count"] == 20


def test_same_logs_and_config_give_the_same_id(store: SqliteLogStore, tmp_path: Path) -> None:
    first = build_dataset(store, _settings(), workload_id="news_topic", client_id=None, root=tmp_path / "ds")
    second = build_dataset(store, _settings(), workload_id="news_topic", client_id=None, root=tmp_path / "ds")
    assert first.dataset_id == second.dataset_id
    other = _settings()
    other.data_split.seed = 7
    assert build_dataset(store, other, workload_id="news_topic", client_id=None, root=tmp_path / "ds").dataset_id != first.dataset_id
    assert len(list_datasets(tmp_path / "ds")) == 2
    assert load_dataset(tmp_path / "ds", first.dataset_id[:10]).splits == first.splits


def test_tool_calls_stay_intact_in_training_lines(tmp_path: Path) -> None:
    with SqliteLogStore(tmp_path / "t.sqlite") as store:
        records = []
        for i in range(60):
            data = tool_record_dict(timestamp=i)
            data["request"]["messages"][1]["content"] = f"quote for ticker number {i}"
            records.append(LogRecord.model_validate(data))
        store.write(records)
        settings = Settings(data_split=DataSplitSettings(eval_size=5, min_total_records=10, limit=None))
        ref = build_dataset(store, settings, workload_id="quotes", client_id=None, root=tmp_path / "ds")
    assert ref.manifest["workload_type"] == "tool_calling"
    line = json.loads(Path(ref.splits["train"]["path"]).read_text().splitlines()[0])
    assert line["tools"][0]["function"]["name"] == "get_quote"
    assert line["messages"][-1]["tool_calls"][0]["function"]["arguments"] == '{"ticker": "AAPL"}'


def test_unknown_workload_and_too_few_records_are_clear_errors(store: SqliteLogStore, tmp_path: Path) -> None:
    with pytest.raises(InsufficientData, match="no records for workload 'nope'"):
        build_dataset(store, _settings(), workload_id="nope", client_id=None, root=tmp_path)
    big_eval = Settings(data_split=DataSplitSettings(eval_size=500, limit=None))
    with pytest.raises(InsufficientData, match="at least 502 are needed"):
        build_dataset(store, big_eval, workload_id="news_topic", client_id=None, root=tmp_path)


def test_semantic_icl_needs_an_embedder_and_then_picks_per_record(store: SqliteLogStore, tmp_path: Path) -> None:
    from services.domain.errors import ConfigError
    from tests.unit.pipeline.test_icl import bag_of_words

    settings = _settings()
    settings.icl.example_selection = "semantic_similarity"
    with pytest.raises(ConfigError, match="no embedding model was given"):
        build_dataset(store, settings, workload_id="news_topic", client_id=None, root=tmp_path)
    ref = build_dataset(store, settings, workload_id="news_topic", client_id=None, root=tmp_path, embed=bag_of_words)
    assert ref.manifest["icl"]["selection"] == "semantic_similarity"
    assert ref.manifest["icl"]["examples_per_record"] == {"min": 3, "max": 3}


def test_calls_of_another_shape_are_left_out_and_counted(store: SqliteLogStore, tmp_path: Path) -> None:
    from tests.factories import embedding_record_dict

    stray = LogRecord.model_validate(embedding_record_dict(workload_id="news_topic", timestamp=1_770_000_001))
    store.write([stray])
    ref = build_dataset(store, _settings(), workload_id="news_topic", client_id=None, root=tmp_path / "ds")
    assert ref.manifest["workload_type"] == "classification"
    assert ref.manifest["other_call_types"] == {"count": 1, "record_ids": [stray.id]}
    assert ref.splits["train"]["count"] == ref.manifest["counts"]["train"]


def test_config_hash_covers_data_settings_only() -> None:
    from services.datastore.datasets import config_hash
    from services.domain.settings import Settings

    base = Settings()
    policy = Settings.model_validate({"workloads": {"w": {"promotion": {"min_score": 0.5}}}, "training": {"epochs": 9}})
    data = Settings.model_validate({"data_split": {"eval_size": 150}})
    assert config_hash(base, "w") == config_hash(policy, "w"), "promotion/training settings keep dataset ids"
    assert config_hash(base, "w") != config_hash(data, "w")


def test_estimated_teacher_cost_counts_tool_definitions_and_tool_calls() -> None:
    import hashlib

    from services.domain.datasets import DatasetRef, teacher_usage

    tools = [{"type": "function", "function": {"name": "lookup", "description": "x" * 400, "parameters": {}}}]
    call = [{"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\": \"acme\"}"}}]
    rows = [{"request": {"messages": [{"role": "user", "content": "hi"}], "tools": tools},
             "response": {"choices": [{"message": {"role": "assistant", "content": None, "tool_calls": call}}]}}]

    class Rows(DatasetRef):
        def read_split(self, split: str):  # type: ignore[no-untyped-def,override]
            return iter(rows)

    usage = teacher_usage(Rows(hashlib.sha256(b"x").hexdigest(), {}, {}))
    assert usage is not None and usage["estimated"] is True
    assert usage["prompt_tokens"] > 100, "the 400-character tool definition is billed input"
    assert usage["completion_tokens"] > 10, "a tool call is billed output even with no text"


def test_a_dataset_uses_one_teacher_and_counts_the_others(tmp_path: Path) -> None:
    """A teacher upgrade must not silently mix two teachers' labels: the configured teacher's records are used,
    the others' counted; with none of the configured teacher's records, the newest teacher's are."""
    from services.datastore.datasets import build_dataset
    from services.datastore.stores.sqlite import SqliteLogStore
    from services.domain.records import LogRecord
    from services.domain.settings import Settings
    from tests.model_plane import classification_logs

    old, new = classification_logs(80, seed=1), classification_logs(60, seed=2)
    for record in old:
        record["request"]["model"] = "teacher-v1"
    for record in new:
        record["request"]["model"], record["timestamp"] = "teacher-v2", record["timestamp"] + 10_000
        record["request"]["messages"][-1]["content"] += " (v2)"
    settings = Settings.model_validate({"teacher": {"model": "teacher-v1"}, "artifacts": {"root": str(tmp_path)},
                                        "data_split": {"eval_size": 10, "min_total_records": 20}})
    with SqliteLogStore(tmp_path / "logs.sqlite") as store:
        store.write([LogRecord.model_validate(r) for r in old + new])
        configured = build_dataset(store, settings, workload_id="news_topic", client_id=None, root=tmp_path / "d")
        newest = build_dataset(store, settings.model_copy(update={"teacher": settings.teacher.model_copy(
            update={"model": "not-in-the-logs"})}), workload_id="news_topic", client_id=None, root=tmp_path / "d")
    teachers = configured.manifest["teacher_models"]
    assert teachers["used"] == {"chat": "teacher-v1"} and teachers["matches_configured"] is True
    assert teachers["left_out"] == 60 and configured.manifest["counts"]["exported"] == 80
    fallback = newest.manifest["teacher_models"]
    assert fallback["used"] == {"chat": "teacher-v2"} and fallback["matches_configured"] is False
    assert newest.manifest["counts"]["exported"] == 60
    assert fallback["seen"] == {"chat": {"teacher-v1": 80, "teacher-v2": 60}}
