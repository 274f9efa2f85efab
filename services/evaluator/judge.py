"""LLM-as-judge for chat workloads, through any OpenAI-compatible endpoint.

The judge reads the user's request, the teacher's answer (the reference) and the candidate's
answer, and rates the candidate 1-10 against a fixed rubric. The endpoint and its retries are
`services/models/runtime/llm_endpoint.py`'s.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from openai.types.chat import ChatCompletionMessageParam

from services.evaluator.metrics.bootstrap import bootstrap_mean
from services.models.runtime.llm_endpoint import ChatEndpoint

MIN_SCORE, MAX_SCORE = 1, 10

RUBRIC = """You are grading an AI assistant's answer against a reference answer written by a stronger model.
Judge the candidate on: correctness and faithfulness to the reference; completeness (does it cover
what the reference covers that matters to the user); following the user's instructions and format;
no invented facts. Style and length differences do not matter unless they change the meaning.
10 = as good as the reference; 7-9 = minor omissions; 4-6 = partly correct or missing important
parts; 1-3 = wrong, off-topic or harmful.
Reply with one short sentence of justification, then a final line exactly of the form "Score: N"
where N is an integer from 1 to 10."""

# A whole number (optionally decimal): never the "1" of "10", and a sentence's full stop is not a decimal point.
_NUMBER = r"(?<!\d)(?<!\d\.)(\d+(?:\.\d+)?)(?!\.?\d)"
# Tried in order; within a pattern the LAST match wins (judges state the verdict at the end).
_PATTERNS = [
    re.compile(rf"(?:score|rating|grade)\**(?:\s+(?:is|of))?\s*[:=\-]?\s*\**\s*{_NUMBER}", re.IGNORECASE),
    re.compile(rf"{_NUMBER}\s*(?:/|out\s+of)\s*10(?!\.?\d)", re.IGNORECASE),
    re.compile(rf"\*\*\s*{_NUMBER}\s*\*\*"),
    re.compile(rf"^\W*{_NUMBER}\W*$"),
]
_JSON_OBJECT = re.compile(r"\{[^{}]*\}")


def _in_range(value: float) -> float | None:
    return value if MIN_SCORE <= value <= MAX_SCORE else None


def _from_json(text: str) -> float | None | bool:
    """The score of a JSON object in the reply; False when there is no such object."""
    for blob in reversed(_JSON_OBJECT.findall(text)):
        try:
            obj = json.loads(blob)
        except ValueError:
            continue
        for key in ("score", "rating", "grade"):
            value = obj.get(key) if isinstance(obj, dict) else None
            if isinstance(value, bool):
                continue
            if isinstance(value, int | float):
                return _in_range(float(value))
            if isinstance(value, str) and re.fullmatch(r"\d+(?:\.\d+)?", value.strip()):
                return _in_range(float(value))
    return False


def parse_judge_score(text: str | None) -> float | None:
    """The 1-10 score in a judge's reply; None when missing or out of range (an unparsed judgement)."""
    if not text:
        return None
    from_json = _from_json(text)
    if from_json is not False:
        return from_json
    for pattern in _PATTERNS:
        matches = pattern.findall(text)
        if matches:
            # An explicit but out-of-range score is unparsed, not a cue to look for another number.
            return _in_range(float(matches[-1]))
    return None


@dataclass(frozen=True)
class Judgement:
    """One judge verdict: the parsed 1-10 score (None if unparsed) and the raw reply."""

    score: float | None
    raw: str


def _request_text(messages: Sequence[Mapping[str, Any]]) -> str:
    lines = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):  # OpenAI content parts: keep the text ones
            content = " ".join(str(part.get("text", "")) for part in content if isinstance(part, Mapping))
        lines.append(f"[{message.get('role', 'user')}] {content or ''}")
    return "\n".join(lines)


def build_judge_messages(
    request_messages: Sequence[Mapping[str, Any]], reference: str, candidate: str
) -> list[ChatCompletionMessageParam]:
    """The chat messages sent to the judge: the rubric, then conversation, reference and candidate."""
    user = (
        f"## Conversation\n{_request_text(request_messages)}\n\n"
        f"## Reference answer\n{reference}\n\n"
        f"## Candidate answer\n{candidate}\n\n"
        "Grade the candidate answer."
    )
    return [{"role": "system", "content": RUBRIC}, {"role": "user", "content": user}]


class JudgeClient(ChatEndpoint):
    """Scores candidate answers with an LLM judge (retries and concurrency: `ChatEndpoint`)."""

    def judge(self, request_messages: Sequence[Mapping[str, Any]], reference: str, candidate: str) -> Judgement:
        """Ask the judge to rate one candidate answer against the teacher's reference."""
        raw = self.complete(build_judge_messages(request_messages, reference, candidate))
        return Judgement(score=parse_judge_score(raw), raw=raw)

    def judge_many(
        self,
        requests: Sequence[Sequence[Mapping[str, Any]]],
        references: Sequence[str],
        candidates: Sequence[str],
    ) -> list[Judgement]:
        """Judge each (request, reference, candidate) triple, `concurrency` at a time, results in input order."""
        if not len(requests) == len(references) == len(candidates):
            raise ValueError("requests, references and candidates must have the same length")
        return self.map(self.judge, requests, references, candidates)


def normalise_score(score: float) -> float:
    """A 1-10 judge score mapped onto 0-1."""
    return (score - MIN_SCORE) / (MAX_SCORE - MIN_SCORE)


def judge_report(
    judge: JudgeClient,
    requests: Sequence[Sequence[Mapping[str, Any]]],
    references: Sequence[str],
    predicted: Sequence[str | None],
    *,
    bootstrap_samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Mean normalised judge score (the score, with a bootstrap CI); unparseable candidates score 0.

    A judgement the judge's reply does not let us parse is the judge's failure, not the candidate's:
    it is left out of the mean and counted in `judge_unparsed`.
    """
    if not len(requests) == len(references) == len(predicted):
        raise ValueError("requests, references and predictions must have the same length")
    to_judge = [i for i, p in enumerate(predicted) if p is not None]
    verdicts = judge.judge_many(
        [requests[i] for i in to_judge], [references[i] for i in to_judge], [predicted[i] or "" for i in to_judge]
    )
    scores: list[float] = [0.0] * (len(predicted) - len(to_judge))
    raw_scores: list[float | None] = []
    for verdict in verdicts:
        raw_scores.append(verdict.score)
        if verdict.score is not None:
            scores.append(normalise_score(verdict.score))
    values = np.asarray(scores, dtype=np.float64)
    parsed = [s for s in raw_scores if s is not None]
    ci = bootstrap_mean(values, samples=bootstrap_samples, confidence=confidence, seed=seed)
    return {
        "n": len(predicted),
        "unparseable": len(predicted) - len(to_judge),
        "judge_model": judge.model,
        "judge_unparsed": sum(s is None for s in raw_scores),
        "judge_score": float(values.mean()) if values.size else None,
        "judge_score_ci": list(ci) if ci is not None else None,
        "judge_mean_raw": float(np.mean(parsed)) if parsed else None,
    }
