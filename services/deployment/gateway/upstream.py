"""The teacher's OpenAI-compatible upstream: the one place the gateway's calls to the teacher go through,
over one pooled `httpx.AsyncClient` opened at start-up (the gateway's lifespan) and closed at shutdown.
(Per-route timeouts, retries and fallback belong here too, issue 19.)"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pydantic_core

from services.deployment.gateway.protocol import JSON, GatewayError
from services.domain.settings import TeacherSettings


@dataclass(frozen=True, slots=True)
class TeacherReply:
    """A whole (not streamed) answer of the teacher, kept as the bytes it sent."""

    status: int
    content: bytes
    content_type: str

    @property
    def is_json(self) -> bool:
        return self.content_type.startswith(JSON)

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


def upstream_failed(exc: httpx.HTTPError) -> GatewayError:
    return GatewayError(502, f"the teacher upstream failed: {type(exc).__name__}: {exc}", "upstream_error")


class TeacherUpstream:
    """Posts to the teacher (`teacher.base_url`, with its API key and `timeout_s`); a transport failure
    is a 502 `upstream_error` GatewayError."""

    def __init__(self, teacher: TeacherSettings, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        headers = {"Content-Type": JSON}
        if teacher.api_key is not None:
            headers["Authorization"] = f"Bearer {teacher.api_key.get_secret_value()}"
        self._base_url = str(teacher.base_url).rstrip("/")
        self._client = httpx.AsyncClient(headers=headers, timeout=teacher.timeout_s, transport=transport)
        self._urls: dict[str, httpx.URL] = {}

    def url(self, path: str) -> httpx.URL:
        """The teacher's URL for `path`, parsed once (httpx would join and re-parse a relative one per request)."""
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = httpx.URL(self._base_url + path)
        return url

    async def post(self, path: str, body: dict[str, Any]) -> TeacherReply:
        """The teacher's whole answer to `body` at `path` (e.g. "/chat/completions")."""
        try:
            response = await self._client.post(self.url(path), content=pydantic_core.to_json(body))
        except httpx.HTTPError as exc:
            raise upstream_failed(exc) from None
        return TeacherReply(response.status_code, response.content, response.headers.get("content-type", ""))

    async def stream(self, path: str, body: dict[str, Any]) -> httpx.Response | TeacherReply:
        """The teacher's streamed answer, open (the caller relays and closes it); a TeacherReply when the
        teacher refused (not 200): an error is read whole, never streamed."""
        request = self._client.build_request("POST", self.url(path), content=pydantic_core.to_json(body))
        try:
            response = await self._client.send(request, stream=True)
            if response.status_code == 200:
                return response
            try:
                content = await response.aread()
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            raise upstream_failed(exc) from None
        return TeacherReply(response.status_code, content, response.headers.get("content-type", ""))

    async def aclose(self) -> None:
        await self._client.aclose()

