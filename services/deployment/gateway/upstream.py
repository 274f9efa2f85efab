"""The teacher's OpenAI-compatible upstream: the one place the gateway's calls to the teacher go through,
over one pooled `httpx.AsyncClient` opened at start-up (the gateway's lifespan) and closed at shutdown.
Each call keeps its request's `CallPolicy` (retries.py): a deadline over every attempt, a connect
timeout, and retries with jittered backoff on 429/5xx and connection errors (streams: only before
their first byte)."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pydantic_core

from services.deployment.gateway.protocol import JSON, GatewayError
from services.deployment.gateway.retries import RETRIED_STATUS, CallPolicy
from services.domain.settings import TeacherSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TeacherReply:
    """A whole (not streamed) answer of the teacher, kept as the bytes it sent."""

    status: int
    content: bytes
    content_type: str
    retry_after: str | None = None

    @property
    def is_json(self) -> bool:
        return self.content_type.startswith(JSON)

    @property
    def failed(self) -> bool:
        """The teacher could not answer (overloaded, down): a status worth retrying, or a student's fallback.
        A 4xx other than 408/429 is the request's fault and is passed on as it is."""
        return self.status in RETRIED_STATUS

    def body_bytes(self) -> bytes:
        """What the client gets: the teacher's JSON as it sent it, or an OpenAI-shaped error quoting the rest."""
        if self.is_json:
            return self.content
        text = self.content.decode(errors="replace")[:500]
        return pydantic_core.to_json({"error": {"message": text, "type": "upstream_error"}})

    def json(self) -> dict[str, Any] | None:
        """The answer parsed (for logging and counting), or None when it is not a JSON object."""
        if not self.is_json:
            return None
        try:
            parsed = pydantic_core.from_json(self.content)
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict) else None


class TeacherUnavailable(GatewayError):
    """No answer from the teacher: it timed out (504) or could not be reached (502), after every attempt."""


# What the gateway tells a client whose teacher did not answer, and what it raises: the setting to change.
_HOW = "(teacher.timeout_s, or workloads.<workload>.teacher_calls.timeout_s)"


def _reply(response: httpx.Response, content: bytes) -> TeacherReply:
    return TeacherReply(response.status_code, content, response.headers.get("content-type", ""),
                        response.headers.get("retry-after"))


class TeacherUpstream:
    """Posts to the teacher (`teacher.base_url`, with its API key). `retried(workload, reason)` is told of
    every retry (for a metric)."""

    def __init__(self, teacher: TeacherSettings, *, transport: httpx.AsyncBaseTransport | None = None,
                 retried: Callable[[str, str], None] | None = None, rng: random.Random | None = None) -> None:
        headers = {"Content-Type": JSON}
        if teacher.api_key is not None:
            headers["Authorization"] = f"Bearer {teacher.api_key.get_secret_value()}"
        self._base_url = str(teacher.base_url).rstrip("/")
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=100)
        self._client = httpx.AsyncClient(headers=headers, timeout=teacher.timeout_s, transport=transport, limits=limits)
        self._urls: dict[str, httpx.URL] = {}
        self._retried = retried or (lambda _workload, _reason: None)
        self._rng = rng or random.Random()

    def url(self, path: str) -> httpx.URL:
        """The teacher's URL for `path`, parsed once (httpx would join and re-parse a relative one per request)."""
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = httpx.URL(self._base_url + path)
        return url

    async def post(self, path: str, body: dict[str, Any], policy: CallPolicy, workload: str) -> TeacherReply:
        """The teacher's whole answer to `body` at `path` (e.g. "/chat/completions"), within the policy's
        deadline; the last answer when every attempt failed with a retried status; TeacherUnavailable
        when none came."""
        return await self._call(path, body, policy, workload, stream=False)  # type: ignore[return-value]

    async def stream(self, path: str, body: dict[str, Any], policy: CallPolicy,
                     workload: str) -> httpx.Response | TeacherReply:
        """The teacher's streamed answer, open once its headers came (the caller relays and closes it; each
        chunk must then come within the policy's timeout); a TeacherReply when the teacher refused (not
        200): an error is read whole, never streamed."""
        return await self._call(path, body, policy, workload, stream=True)

    async def _call(self, path: str, body: dict[str, Any], policy: CallPolicy, workload: str, *,
                    stream: bool) -> httpx.Response | TeacherReply:
        content = pydantic_core.to_json(body)
        deadline = policy.deadline()
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - time.monotonic()
            timeout = httpx.Timeout(policy.timeout_s if stream else remaining,
                                    connect=min(policy.connect_timeout_s, remaining))
            request = self._client.build_request("POST", self.url(path), content=content, timeout=timeout)
            failure: TeacherUnavailable
            try:
                async with asyncio.timeout(remaining):
                    answer = await self._send(request, stream=stream)
            except (TimeoutError, httpx.TimeoutException) as exc:
                failure = TeacherUnavailable(
                    504, f"the teacher did not answer within {policy.timeout_s:g} s ({attempt} attempt(s), last: "
                         f"{type(exc).__name__}); raise the timeout {_HOW} if it is expected to be this slow",
                    "upstream_error", code="upstream_timeout")
                reason, retry_after = "timeout", None
            except httpx.HTTPError as exc:
                failure = TeacherUnavailable(
                    502, f"the teacher upstream failed ({attempt} attempt(s)): {type(exc).__name__}: {exc}",
                    "upstream_error", code="upstream_unreachable")
                reason, retry_after = "connection", None
            else:
                if isinstance(answer, httpx.Response) or not answer.failed:
                    return answer
                wait = policy.wait(attempt, deadline, self._rng, answer.retry_after)
                if wait is None:
                    return answer
                self._retried(workload, str(answer.status))
                await asyncio.sleep(wait)
                continue
            wait = policy.wait(attempt, deadline, self._rng, retry_after)
            if wait is None:
                raise failure
            log.info("teacher call for %s failed (%s), attempt %d of %d", workload, reason, attempt, policy.max_attempts)
            self._retried(workload, reason)
            await asyncio.sleep(wait)

    async def _send(self, request: httpx.Request, *, stream: bool) -> httpx.Response | TeacherReply:
        """One attempt: a whole answer as a TeacherReply, or an open stream (status 200 only)."""
        response = await self._client.send(request, stream=True)
        if stream and response.status_code == 200:
            return response
        try:
            content = await response.aread()
        finally:
            await response.aclose()
        return _reply(response, content)

    async def aclose(self) -> None:
        await self._client.aclose()
