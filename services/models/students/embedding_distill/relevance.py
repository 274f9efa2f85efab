"""An LLM relevance judge for ranking distillation: graded query-passage labels from any OpenAI-compatible endpoint.

The paper this follows (arXiv 2512.08088) labels query-document pairs with an LLM and trains on those
labels where a teacher's similarity alone would mislead. With `distillation.judge_relevance` on (and
`evaluation.judge` configured), every round's candidate lists (`listwise.py`) are graded 0-3 by the judge:

    0 unrelated, 1 on the topic but not answering, 2 partly answering, 3 answering the query.

The listwise trainer then adds a term that pulls the student's softmax toward the judged grades
(`listwise.judged_listwise`), beside the teacher's ranking; the evaluator scores retrieval on the judge's
grades (`services/evaluator/metrics/retrieval_judged.py`). Grades are cached on disk by (judge model, query,
passage), so a resumed or repeated run never pays for a pair twice. A reply without a readable grade is
left out and counted, never guessed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections.abc import Sequence
from pathlib import Path

from openai.types.chat import ChatCompletionMessageParam

from services.models.runtime.llm_endpoint import ChatEndpoint

log = logging.getLogger(__name__)
MAX_GRADE = 3
RUBRIC = """You judge how well a passage answers a search query, for a financial-document search engine.
Grades: 0 = unrelated; 1 = on the query's topic or company but does not answer it; 2 = partly answers it
(some of the facts asked for); 3 = answers it. Judge only what the passage says.
Reply with one short sentence of reasoning, then a final line exactly of the form "Relevance: N"
where N is 0, 1, 2 or 3."""
_GRADE = re.compile(r"relevance\**\s*[:=]?\s*\**\s*([0-3])(?![\d.])", re.IGNORECASE)
_ALONE = re.compile(r"^\W*([0-3])\W*$")
_JSON = re.compile(r"\{[^{}]*\}")


def parse_relevance(text: str | None) -> int | None:
    """The 0-3 grade in a judge's reply (the last one stated); None when there is none."""
    if not text:
        return None
    for blob in reversed(_JSON.findall(text)):
        try:
            value = json.loads(blob).get("relevance")
        except (ValueError, AttributeError):
            continue
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_GRADE:
            return value
    found = _GRADE.findall(text) or _ALONE.findall(text.strip())
    return int(found[-1]) if found else None


def relevance_messages(query: str, passage: str) -> list[ChatCompletionMessageParam]:
    return [{"role": "system", "content": RUBRIC},
            {"role": "user", "content": f"## Query\n{query}\n\n## Passage\n{passage}\n\nGrade the passage."}]


class RelevanceJudge:
    """Grades (query, passage) pairs through a `ChatEndpoint`, with an on-disk cache (JSON Lines, append-only)."""

    def __init__(self, endpoint: ChatEndpoint, cache_dir: Path | None = None) -> None:
        self.endpoint = endpoint
        self.path = cache_dir / hashlib.sha256(endpoint.model.encode()).hexdigest()[:16] / "grades.jsonl" \
            if cache_dir is not None else None  # None: grades kept in memory only
        self._grades: dict[str, int | None] = {}
        self._lock = threading.Lock()
        self.asked = self.unparsed = 0
        if self.path is not None and self.path.exists():
            for line in self.path.read_text("utf-8").splitlines():
                try:
                    entry = json.loads(line)
                    self._grades[entry["key"]] = entry["grade"]
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by a crash: that pair is asked again

    @staticmethod
    def key(query: str, passage: str) -> str:
        return hashlib.sha256(f"{query}\x00{passage}".encode()).hexdigest()

    def grade(self, pairs: Sequence[tuple[str, str]]) -> list[int | None]:
        """The judge's grade of each pair (None: unreadable reply); only uncached pairs are sent."""
        keys = [self.key(q, p) for q, p in pairs]
        todo = list(dict.fromkeys(k for k in keys if k not in self._grades))
        by_key = dict(zip(keys, pairs, strict=True))
        if todo:
            log.info("relevance judge %r: grading %d pairs (%d cached)", self.endpoint.model, len(todo),
                     len(keys) - len(todo))
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self.endpoint.map(lambda k: self._ask(k, *by_key[k]), todo)
        return [self._grades[k] for k in keys]

    def _ask(self, key: str, query: str, passage: str) -> None:
        grade = parse_relevance(self.endpoint.complete(relevance_messages(query, passage)))
        with self._lock:
            self._grades[key] = grade
            self.asked += 1
            self.unparsed += grade is None
            if self.path is not None:
                with self.path.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps({"key": key, "grade": grade}) + "\n")
