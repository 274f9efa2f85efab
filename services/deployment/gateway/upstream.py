"""The teacher's OpenAI-compatible upstream: the one place the gateway's calls to the teacher go through,
over one pooled `aiohttp.ClientSession` opened at start-up (the gateway's lifespan) and closed at
shutdown. Each call keeps its request's `CallPolicy` (retries.py): a deadline over every attempt, a
connect timeout, and retries with jittered backoff on 429/5xx and connection errors (streams: only
before their first byte).

aiohttp rather than httpx: a call costs about 0.6 ms of the gateway's CPU with it and 1.9 ms with
httpx on this machine (docs/benchmarks.md, the gateway), the largest part of the gateway's own cost."""

from __future__ import annotations

import asyncio
import logging
import random
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pydantic_core
from yarl import URL

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


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for `url` (HTTPS_PROXY / HTTP_PROXY, unless NO_PROXY covers its host)."""
    parts = urlsplit(url)
    if not parts.hostname or urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)


class StreamBroken(Exception):
    """The teacher's stream ended before its answer did: dropped, or silent past the timeout."""


class TeacherStream:
    """An open streamed answer of the teacher (status 200): its bytes as they come, then `aclose`."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def chunks(self) -> AsyncIterator[bytes]:
        """Each piece as it arrives (the read timeout is the policy's `timeout_s`); StreamBroken if cut off."""
        try:
            while chunk := await self._response.content.readany():
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise StreamBroken(f"{type(exc).__name__}: {exc}".rstrip(": ")) from None

    async def aclose(self) -> None:
        self._response.close()


class TeacherUpstream:
    """Posts to the teacher (`teacher.base_url`, with its API key). `retried(workload, reason)` is told of
    every retry (for a metric). Open it in a running event loop (`open`), close it with `aclose`."""

    def __init__(self, teacher: TeacherSettings, *, retried: Callable[[str, str], None] | None = None,
                 rng: random.Random | None = None) -> None:
        self._headers = {"Content-Type": JSON}
        if teacher.api_key is not None:
            self._headers["Authorization"] = f"Bearer {teacher.api_key.get_secret_value()}"
        self._base_url = str(teacher.base_url).rstrip("/")
        self._session: aiohttp.ClientSession | None = None
        self._proxy = env_proxy(self._base_url)
        self._urls: dict[str, URL] = {}
        self._retried = retried or (lambda _workload, _reason: None)
        self._rng = rng or random.Random()

    async def open(self) -> TeacherUpstream:
        # No limit on connections (the default caps them at 100). The environment's proxy is looked up once
        # (env_proxy): aiohttp's trust_env reads it, and ~/.netrc, on a thread for every request.
        self._session = aiohttp.ClientSession(headers=self._headers,
                                              connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300))
        return self

    def url(self, path: str) -> URL:
        """The teacher's URL for `path`, parsed once rather than per request."""
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = URL(self._base_url + path, encoded=False)
        return url

    async def post(self, path: str, body: dict[str, Any], policy: CallPolicy, workload: str) -> TeacherReply:
        """The teacher's whole answer to `body` at `path` (e.g. "/chat/completions"), within the policy's
        deadline; the last answer when every attempt failed with a retried status; TeacherUnavailable
        when none came."""
        answer = await self._call(path, body, policy, workload, stream=False)
        assert isinstance(answer, TeacherReply)  # noqa: S101 - _send returns a stream only when asked for one
        return answer

    async def stream(self, path: str, body: dict[str, Any], policy: CallPolicy,
                     workload: str) -> TeacherStream | TeacherReply:
        """The teacher's streamed answer, open once its headers came (the caller relays and closes it; each
        chunk must then come within the policy's timeout); a TeacherReply when the teacher refused (not
        200): an error is read whole, never streamed."""
        return await self._call(path, body, policy, workload, stream=True)

    async def _call(self, path: str, body: dict[str, Any], policy: CallPolicy, workload: str, *,
                    stream: bool) -> TeacherStream | TeacherReply:
        content = pydantic_core.to_json(body)
        deadline = policy.deadline()
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - time.monotonic()
            connect = min(policy.connect_timeout_s, remaining)
            # A stream's deadline holds until its headers (asyncio.timeout below); then each read has timeout_s.
            timeout = (aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=policy.timeout_s) if stream
                       else aiohttp.ClientTimeout(total=remaining, sock_connect=connect))
            failure: TeacherUnavailable
            try:
                async with asyncio.timeout(remaining):
                    answer = await self._send(path, content, timeout, stream=stream)
            except TimeoutError as exc:  # aiohttp's timeouts are TimeoutErrors too
                failure = TeacherUnavailable(
                    504, f"the teacher did not answer within {policy.timeout_s:g} s ({attempt} attempt(s), last: "
                         f"{type(exc).__name__}); raise the timeout {_HOW} if it is expected to be this slow",
                    "upstream_error", code="upstream_timeout")
                reason, retry_after = "timeout", None
            except aiohttp.ClientError as exc:
                failure = TeacherUnavailable(
                    502, f"the teacher upstream failed ({attempt} attempt(s)): {type(exc).__name__}: {exc}",
                    "upstream_error", code="upstream_unreachable")
                reason, retry_after = "connection", None
            else:
                if isinstance(answer, TeacherStream) or not answer.failed:
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

    async def _send(self, path: str, content: bytes, timeout: aiohttp.ClientTimeout, *,
                    stream: bool) -> TeacherStream | TeacherReply:
        """One attempt: a whole answer as a TeacherReply, or an open stream (status 200 only)."""
        if self._session is None:
            raise RuntimeError("TeacherUpstream.open() was not called (the gateway's lifespan opens it)")
        response = await self._session.post(self.url(path), data=content, timeout=timeout, proxy=self._proxy)
        if stream and response.status == 200:
            return TeacherStream(response)
        try:
            read = await response.read()
        finally:
            response.release()
        return TeacherReply(response.status, read, response.headers.get("Content-Type", ""),
                            response.headers.get("Retry-After"))

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
