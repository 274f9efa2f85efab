"""LLM-as-judge for chat workloads, through any OpenAI-compatible endpoint.

The judge reads the user's request, the teacher's answer (the reference) and the candidate's
answer, and rates the candidate 1-10 against a fixed rubric. Retries are ours, not the client's:
timeouts, connection errors, 408/409/429 and 5xx are retried with exponential backoff; any other
4xx is a mistake on our side (bad model name, bad key) and fails at once.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import openai
from openai.types.chat import ChatCompletionMessageParam

from services.domain.errors import ConfigError, ExternalServiceError
from services.domain.settings import JudgeSettings
from services.evaluator.metrics.bootstrap import bootstrap_mean

MIN_SCORE, MAX_SCORE = 1, 10
_RETRYABLE_STATUS = frozenset({408, 409, 429})
_MAX_BACKOFF_S = 30.0

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


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in _RETRYABLE_STATUS or exc.status_code >= 500
    return False


def _retry_after(exc: Exception) -> float | None:
    """Seconds the server asked us to wait (Retry-After), if it said so."""
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class JudgeClient:
    """Scores candidate answers with an LLM judge; the `openai.OpenAI` client is injected."""

    def __init__(
        self,
        client: openai.OpenAI,
        *,
        model: str,
        max_attempts: int = 4,
        backoff_s: float = 1.0,
        concurrency: int = 4,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_attempts < 1 or concurrency < 1:
            raise ValueError("max_attempts and concurrency must be at least 1")
        self.client = client
        self.model = model
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.concurrency = concurrency
        self._sleep = sleep

    @classmethod
    def from_settings(cls, settings: JudgeSettings, **kwargs: Any) -> JudgeClient:
        """A judge for the configured endpoint; the client's own retries are off (this class retries)."""
        if not (settings.base_url and settings.model):
            raise ConfigError("evaluation.judge needs base_url and model")
        # Local OpenAI-compatible servers often need no key, but the client insists on one.
        api_key = settings.api_key.get_secret_value() if settings.api_key else "not-needed"
        client = openai.OpenAI(base_url=settings.base_url, api_key=api_key, timeout=settings.timeout_s, max_retries=0)
        return cls(client, model=settings.model, **kwargs)

    def complete(self, messages: list[ChatCompletionMessageParam]) -> str:
        """One judge completion with retries; raises ExternalServiceError(retryable=...) when it gives up."""
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = self.client.chat.completions.create(model=self.model, messages=messages, temperature=0)
                if not response.choices:
                    return ""
                return response.choices[0].message.content or ""
            except openai.APIError as exc:
                if not _retryable(exc):
                    raise ExternalServiceError(
                        f"judge {self.model!r} refused the request: {exc}", retryable=False
                    ) from exc
                if attempt == self.max_attempts:
                    raise ExternalServiceError(
                        f"judge {self.model!r} failed after {attempt} attempts: {exc}", retryable=True
                    ) from exc
                delay = min(self.backoff_s * 2 ** (attempt - 1), _MAX_BACKOFF_S)
                self._sleep(max(delay, min(_retry_after(exc) or 0.0, _MAX_BACKOFF_S)))
        raise AssertionError("unreachable")  # pragma: no cover - the loop always returns or raises

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
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(self.judge, requests, references, candidates))


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
