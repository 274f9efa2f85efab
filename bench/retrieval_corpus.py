"""FinanceBench as a retrieval benchmark: chunked evidence pages, graded relevance, a split by company.

Read at run time from ../shared/data/financebench (CC BY-NC 4.0: never copied into the repo).
- Corpus: every distinct full evidence page (`evidence_text_full_page`), whitespace collapsed, cut
  into windows of `words` words (a short tail joins the window before it).
- Relevance of a chunk to a question: 2 when it holds part of the question's evidence text (shares
  an 8-word run with it), 1 for the other chunks of an evidence page, else 0. MRR and Recall count
  gain 2 (the chunk that answers); nDCG uses both grades.
- Split: companies in a seeded order fill the held-out set until it holds half the questions; train
  logs are built from the other companies only (their questions, their pages' chunks, and
  pseudo-queries cut from those chunks), so no held-out document or question is trained on.
- Filler: texts from the other shared sets (Twitter headlines, PhraseBank sentences) and pairs of
  headlines joined, to reach a large corpus for the search-speed measurement.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import SHARED_DATA

FINANCEBENCH = SHARED_DATA / "financebench" / "financebench_open_source.jsonl"
SHINGLE = 8
EVIDENCE_GAIN, PAGE_GAIN = 2.0, 1.0


@dataclass
class Corpus:
    chunks: list[str] = field(default_factory=list)
    chunk_company: list[str] = field(default_factory=list)
    questions: list[str] = field(default_factory=list)
    question_company: list[str] = field(default_factory=list)
    qrels: list[dict[int, float]] = field(default_factory=list)
    pages: int = 0

    def sha256(self) -> str:
        return hashlib.sha256(json.dumps([self.chunks, self.questions, self.qrels], sort_keys=True).encode()).hexdigest()


def _words(text: str) -> list[str]:
    return text.split()


def _chunk(words: list[str], size: int) -> list[list[str]]:
    windows = [words[i:i + size] for i in range(0, len(words), size)]
    if len(windows) > 1 and len(windows[-1]) < size // 3:
        tail = windows.pop()
        windows[-1] = windows[-1] + tail
    return windows


def _shingles(words: list[str]) -> set[tuple[str, ...]]:
    if len(words) < SHINGLE:
        return {tuple(words)} if words else set()
    return {tuple(words[i:i + SHINGLE]) for i in range(len(words) - SHINGLE + 1)}


def load_financebench(path: Path = FINANCEBENCH, *, words: int = 80) -> Corpus:
    """The chunked corpus of every evidence page and the 150 questions with graded relevance."""
    if not path.exists():
        raise SystemExit(f"{path} missing: FinanceBench is read from ../shared/data (non-commercial, not shipped)")
    rows = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]
    corpus = Corpus()
    page_chunks: dict[tuple[str, int], list[int]] = {}
    chunk_words: list[list[str]] = []
    for row in rows:
        for evidence in row.get("evidence") or []:
            key = (evidence["doc_name"], int(evidence["evidence_page_num"]))
            if key in page_chunks:
                continue
            page_chunks[key] = []
            for window in _chunk(_words(evidence.get("evidence_text_full_page") or evidence["evidence_text"]), words):
                page_chunks[key].append(len(corpus.chunks))
                corpus.chunks.append(" ".join(window))
                corpus.chunk_company.append(row["company"])
                chunk_words.append(window)
    corpus.pages = len(page_chunks)
    for row in rows:
        labels: dict[int, float] = {}
        for evidence in row.get("evidence") or []:
            ids = page_chunks[(evidence["doc_name"], int(evidence["evidence_page_num"]))]
            wanted = _shingles(_words(evidence["evidence_text"]))
            hits = [i for i in ids if _shingles(chunk_words[i]) & wanted]
            for i in ids:
                labels[i] = max(labels.get(i, 0.0), EVIDENCE_GAIN if i in hits or not hits else PAGE_GAIN)
        corpus.questions.append(row["question"])
        corpus.question_company.append(row["company"])
        corpus.qrels.append(labels)
    return corpus


def split_companies(corpus: Corpus, *, held_out_share: float = 0.5, seed: int = 0) -> tuple[set[str], set[str]]:
    """(train companies, held-out companies): disjoint, held-out holding about `held_out_share` of the questions."""
    companies = sorted(set(corpus.question_company))
    random.Random(seed).shuffle(companies)
    held: set[str] = set()
    for company in companies:
        if sum(c in held for c in corpus.question_company) >= held_out_share * len(corpus.questions):
            break
        held.add(company)
    return set(companies) - held, held


def training_logs(corpus: Corpus, companies: set[str], *, teacher_model: str, seed: int = 0,
                  passage_batch: int = 16, query_words: int = 12, queries_per_chunk: int = 1) -> list[dict[str, Any]]:
    """Embedding log records from `companies` only: questions and pseudo-queries (input_type query), chunks
    (batches, input_type passage). Responses carry no vectors: the trainer asks the teacher (cached)."""
    rng = random.Random(seed)
    chunks = [c for c, company in zip(corpus.chunks, corpus.chunk_company, strict=True) if company in companies]
    queries = [q for q, company in zip(corpus.questions, corpus.question_company, strict=True) if company in companies]
    queries += [q for q, _ in pseudo_queries(corpus, companies, rng, query_words=query_words,
                                             queries_per_chunk=queries_per_chunk)]
    records: list[dict[str, Any]] = []

    def record(text_input: str | list[str], input_type: str) -> dict[str, Any]:
        return {"workload_id": "filings_search", "client_id": "bench", "timestamp": 1_760_000_000 + len(records),
                "request": {"model": teacher_model, "input": text_input, "input_type": input_type},
                "response": {"data": []}}

    records += [record(q, "query") for q in dict.fromkeys(queries)]
    records += [record(chunks[i:i + passage_batch], "passage") for i in range(0, len(chunks), passage_batch)]
    rng.shuffle(records)
    return records


def pseudo_queries(corpus: Corpus, companies: set[str], rng: random.Random, *, query_words: int = 12,
                   queries_per_chunk: int = 1) -> list[tuple[str, int]]:
    """(query, the chunk it was cut from): a span of mostly words (not a row of figures) from each chunk of
    `companies`, as the question that chunk answers."""
    found: list[tuple[str, int]] = []
    for index, (chunk, company) in enumerate(zip(corpus.chunks, corpus.chunk_company, strict=True)):
        if company not in companies:
            continue
        words = chunk.split()
        spans = [words[i:i + query_words] for i in range(0, max(1, len(words) - query_words), 4)]
        texty = [s for s in spans if sum(w.isalpha() for w in s) >= 0.6 * len(s)]
        if texty:
            spans = [rng.choice(texty)] if queries_per_chunk == 1 else rng.sample(texty, min(queries_per_chunk, len(texty)))
            found += [(" ".join(span), index) for span in spans]
    return found


def oracle_grades(corpus: Corpus, companies: set[str], *, seed: int = 0, query_words: int = 12,
                  queries_per_chunk: int = 1) -> dict[tuple[str, str], int]:
    """What a perfect relevance judge would answer (0-3) for the train companies' queries, from FinanceBench's
    labels: a question's evidence chunk 3, the other chunks of its evidence page 1; a pseudo-query's own
    chunk 3. Every other pair is 0 (the bench's stand-in judge; an upper bound on what an LLM judge adds)."""
    grades: dict[tuple[str, str], int] = {}
    for question, company, labels in zip(corpus.questions, corpus.question_company, corpus.qrels, strict=True):
        if company in companies:
            for chunk, gain in labels.items():
                grades[(question, corpus.chunks[chunk])] = 3 if gain >= EVIDENCE_GAIN else 1
    # the same draw as training_logs (same seed, same order), so the queries are the logged ones
    for query, chunk in pseudo_queries(corpus, companies, random.Random(seed), query_words=query_words,
                                       queries_per_chunk=queries_per_chunk):
        grades[(query, corpus.chunks[chunk])] = 3
    return grades


def _read_csv_texts(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get("text", "").strip():
                yield row["text"].strip()


def filler_texts(count: int, *, seed: int = 0) -> tuple[list[str], dict[str, int]]:
    """`count` distinct filler texts: shared Twitter headlines and PhraseBank sentences, then joined headline pairs."""
    texts: list[str] = []
    sources: dict[str, int] = {}
    twitter = SHARED_DATA / "twitter_financial_news_topic"
    for name in ("topic_train.csv", "topic_valid.csv"):
        if (twitter / name).exists():
            found = list(_read_csv_texts(twitter / name))
            texts += found
            sources[f"twitter/{name}"] = len(found)
    phrasebank = SHARED_DATA / "financial_phrasebank" / "Sentences_50Agree.txt"
    if phrasebank.exists():
        found = [line.rsplit("@", 1)[0].strip() for line in phrasebank.read_text("latin-1").splitlines() if "@" in line]
        texts += found
        sources["phrasebank/Sentences_50Agree.txt"] = len(found)
    texts = list(dict.fromkeys(texts))
    headlines = texts[:]
    rng = random.Random(seed)
    pairs = 0
    seen = set(texts)
    while len(texts) < count and len(headlines) > 1:
        joined = " ".join(rng.sample(headlines, 2))
        if joined not in seen:
            seen.add(joined)
            texts.append(joined)
            pairs += 1
    sources["joined pairs of the above"] = pairs
    return texts[:count], sources
