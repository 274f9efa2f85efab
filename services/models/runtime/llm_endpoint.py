"""One OpenAI-compatible chat endpoint called with our own retries: the LLM judges' common part.

The evaluator's answer judge (`services/evaluator/judge.py`) and the embedding trainer's relevance
judge (`services/models/students/embedding_distill/relevance.py`) both send a rubric and read a number
back. Retries are ours, not the client's: timeouts, connection errors, 408/409/429 and 5xx are retried
with exponential backoff (longer when the server's Retry-After asks for it); any other 4xx is a mistake
on our side (a bad model name or key) and fails at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Self, TypeVar

import openai
from openai.types.chat import ChatCompletionMessageParam

from services.domain.errors import ConfigError, ExternalServiceError
from services.domain.settings import JudgeSettings

_RETRYABLE_STATUS = frozenset({408, 409, 429})
_MAX_BACKOFF_S = 30.0
T = TypeVar("T")
R = TypeVar("R")


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


class ChatEndpoint:
    """Completions from one model behind an OpenAI-compatible endpoint; the `openai.OpenAI` client is injected."""

    role = "judge"  # how errors name the endpoint

    def __init__(self, client: openai.OpenAI, *, model: str, max_attempts: int = 4, backoff_s: float = 1.0,
                 concurrency: int = 4, sleep: Callable[[float], None] = time.sleep) -> None:
        if max_attempts < 1 or concurrency < 1:
            raise ValueError("max_attempts and concurrency must be at least 1")
        self.client, self.model = client, model
        self.max_attempts, self.backoff_s, self.concurrency = max_attempts, backoff_s, concurrency
        self._sleep = sleep

    @classmethod
    def from_settings(cls, settings: JudgeSettings, **kwargs: Any) -> Self:
        """An endpoint for the configured judge; the client's own retries are off (this class retries)."""
        if not (settings.base_url and settings.model):
            raise ConfigError("evaluation.judge needs base_url and model")
        # Local OpenAI-compatible servers often need no key, but the client insists on one.
        api_key = settings.api_key.get_secret_value() if settings.api_key else "not-needed"
        client = openai.OpenAI(base_url=settings.base_url, api_key=api_key, timeout=settings.timeout_s, max_retries=0)
        return cls(client, model=settings.model, **kwargs)

    def complete(self, messages: list[ChatCompletionMessageParam]) -> str:
        """One completion (temperature 0) with retries; raises ExternalServiceError(retryable=...) when it gives up."""
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = self.client.chat.completions.create(model=self.model, messages=messages, temperature=0)
                if not response.choices:
                    return ""
                return response.choices[0].message.content or ""
            except openai.APIError as exc:
                if not _retryable(exc):
                    raise ExternalServiceError(
                        f"{self.role} {self.model!r} refused the request: {exc}", retryable=False) from exc
                if attempt == self.max_attempts:
                    raise ExternalServiceError(
                        f"{self.role} {self.model!r} failed after {attempt} attempts: {exc}", retryable=True) from exc
                delay = min(self.backoff_s * 2 ** (attempt - 1), _MAX_BACKOFF_S)
                self._sleep(max(delay, min(_retry_after(exc) or 0.0, _MAX_BACKOFF_S)))
        raise AssertionError("unreachable")  # pragma: no cover - the loop always returns or raises

    def map(self, fn: Callable[..., R], *columns: Iterable[T] | Sequence[Any]) -> list[R]:
        """`fn` over the columns, `concurrency` calls at a time, results in input order."""
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(fn, *columns))
