"""Turn labelled public datasets into teacher logs (the human label is the teacher's answer).

Twitter Financial News Topic (MIT) ships in the repo's `data/`; Financial PhraseBank and
FinanceBench are non-commercial and are read from the shared data folder only when present.
"""

from __future__ import annotations

import csv
import gzip
import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from services.domain.errors import InsufficientData
from services.domain.records import canonical_json

DEFAULT_TEACHER = "meta/llama-3.3-70b-instruct"
DEFAULT_START_TS = 1_760_000_000  # 2025-10-09; converted logs get one call per minute from here

DATASETS: dict[str, dict[str, str]] = {
    "twitter_topic": {
        "folder": "twitter_financial_news_topic",
        "licence": "MIT",
        "workload": "news_topic",
        "description": "finance news tweets, 20 topics (ships in data/)",
    },
    "phrasebank": {
        "folder": "financial_phrasebank",
        "licence": "CC BY-NC-SA 3.0 (non-commercial)",
        "workload": "news_sentiment",
        "description": "Financial PhraseBank sentences, positive/negative/neutral",
    },
    "financebench": {
        "folder": "financebench",
        "licence": "CC BY-NC 4.0 (non-commercial)",
        "workload": "filing_qa",
        "description": "FinanceBench questions over 10-K evidence, free-text answers",
    },
}


@dataclass(frozen=True)
class Example:
    text: str
    answer: str  # the teacher's answer text (already formatted)


def classification_system_prompt(task: str, labels: list[str]) -> str:
    listed = "\n".join(f"- {label}" for label in labels)
    return (
        f"You are a financial analyst assistant. {task}\n"
        f"Choose exactly one of these labels:\n{listed}\n"
        "Answer with the label only, wrapped in triple square brackets, for example "
        f"[[[{labels[0]}]]]."
    )


def format_label(label: str) -> str:
    return f"[[[{label}]]]"


def read_twitter_topic(folder: Path, split: Literal["train", "valid"]) -> tuple[list[str], Iterator[Example]]:
    labels = [line.strip() for line in (folder / "label_names.txt").read_text("utf-8").splitlines() if line.strip()]

    def examples() -> Iterator[Example]:
        with (folder / f"topic_{split}.csv").open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                yield Example(row["text"], format_label(labels[int(row["label"])]))

    return labels, examples()


def read_phrasebank(folder: Path, agreement: str = "50Agree") -> tuple[list[str], Iterator[Example]]:
    labels = ["positive", "negative", "neutral"]

    def examples() -> Iterator[Example]:
        # latin-1 with CRLF; the label follows the LAST '@'.
        with (folder / f"Sentences_{agreement}.txt").open(encoding="latin-1", newline="") as handle:
            for line in handle:
                line = line.rstrip("\r\n")
                if "@" not in line:
                    continue
                sentence, _, label = line.rpartition("@")
                yield Example(sentence.strip(), format_label(label.strip()))

    return labels, examples()


def read_financebench(folder: Path) -> Iterator[Example]:
    with (folder / "financebench_open_source.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            item = json.loads(line)
            evidence = "\n\n".join(e.get("evidence_text", "") for e in item.get("evidence") or [])
            text = f"Company: {item['company']} ({item['doc_name']})\n\nEvidence:\n{evidence}\n\nQuestion: {item['question']}"
            yield Example(text, str(item["answer"]))


def to_log_record(
    example: Example,
    *,
    system_prompt: str,
    workload_id: str,
    client_id: str,
    timestamp: int,
    model: str = DEFAULT_TEACHER,
) -> dict[str, Any]:
    return {
        "workload_id": workload_id,
        "client_id": client_id,
        "timestamp": timestamp,
        "request": {
            "model": model,
            "messages": [
                {"role": "system", "content": system_prompt},
                {"role": "user", "content": example.text},
            ],
        },
        "response": {
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": example.answer},
                    "finish_reason": "stop",
                }
            ]
        },
    }


def dataset_folder(dataset: str, *, repo_data: Path, shared_data: Path) -> Path:
    """Twitter topic comes from the repo's data/; the non-commercial sets from shared data."""
    folder = DATASETS[dataset]["folder"]
    return (repo_data if dataset == "twitter_topic" else shared_data) / folder


def convert(
    dataset: str,
    *,
    folder: Path,
    out: Path,
    workload_id: str | None = None,
    client_id: str = "demo",
    split: Literal["train", "valid"] = "train",
    limit: int | None = None,
    start_timestamp: int = DEFAULT_START_TS,
    model: str = DEFAULT_TEACHER,
    shuffle_seed: int | None = 0,
) -> dict[str, Any]:
    """Write teacher logs for a dataset to `out` (.jsonl or .jsonl.gz); return a summary.

    The source files are sorted by label; a seeded shuffle (`shuffle_seed`, None to keep file
    order) makes the call times independent of the label, as live traffic would be, so a
    "newest N records" export sees every class.
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    workload = workload_id or DATASETS[dataset]["workload"]
    labels: list[str] | None
    if dataset == "twitter_topic":
        labels, examples = read_twitter_topic(folder, split)
        system = classification_system_prompt("Classify the topic of this finance news headline.", labels)
    elif dataset == "phrasebank":
        labels, examples = read_phrasebank(folder)
        system = classification_system_prompt(
            "Classify the sentiment of this sentence from financial news for an investor.", labels
        )
    else:
        labels, examples = None, read_financebench(folder)
        system = (
            "You are a financial analyst assistant. Answer the question about the company's filing "
            "from the evidence given. Be concise and give the figure or fact asked for."
        )
    if shuffle_seed is not None:
        pool = list(examples)
        random.Random(shuffle_seed).shuffle(pool)
        examples = iter(pool)
    written = _write_jsonl(
        out,
        (
            to_log_record(
                example,
                system_prompt=system,
                workload_id=workload,
                client_id=client_id,
                timestamp=start_timestamp + 60 * i,
                model=model,
            )
            for i, example in enumerate(_limited(examples, limit))
        ),
    )
    if written == 0:
        raise InsufficientData(f"{dataset} at {folder} produced no records")
    return {
        "dataset": dataset,
        "licence": DATASETS[dataset]["licence"],
        "workload_id": workload,
        "client_id": client_id,
        "records": written,
        "labels": labels,
        "out": str(out),
    }


def _limited(items: Iterable[Example], limit: int | None) -> Iterator[Example]:
    for i, item in enumerate(items):
        if limit is not None and i >= limit:
            return
        yield item


def _write_jsonl(out: Path, records: Iterable[dict[str, Any]]) -> int:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    opener = gzip.open if out.name.endswith(".gz") else open
    count = 0
    with opener(tmp, "wt", encoding="utf-8") as handle:
        for record in records:
            handle.write(canonical_json(record) + "\n")
            count += 1
    tmp.replace(out)  # a crash never leaves a half-written file under the final name
    return count
