"""Bearer tokens from config, scoped read vs write.

With auth disabled (the embedded default) every call is allowed and the actor is "anonymous".
With auth enabled (the helm chart), every call under /api needs a token: GET calls the `read`
scope, anything that changes state the `write` scope. 401: no or unknown token; 403: known token
without the scope. Tokens are compared in constant time. The routes get the caller through
`orchestrator.api.deps` (`ReadCaller`, `WriteCaller`).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from fastapi import Request

from orchestrator.api.errors import ApiError
from services.domain.settings import AuthSettings


@dataclass(frozen=True)
class Principal:
    name: str
    scopes: frozenset[str]
    client_id: str | None = None


ANONYMOUS = Principal("anonymous", frozenset({"read", "write"}))


def authenticate(settings: AuthSettings, request: Request) -> Principal:
    if not settings.enabled:
        return ANONYMOUS
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    challenge = {"WWW-Authenticate": 'Bearer realm="flywheel"'}
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "unauthorized", "missing bearer token: send 'Authorization: Bearer <token>'", challenge)
    for entry in settings.tokens:
        if hmac.compare_digest(entry.token.get_secret_value().encode(), token.strip().encode()):
            return Principal(entry.name, frozenset(entry.scopes), entry.client_id)
    raise ApiError(401, "unauthorized", "unknown bearer token", challenge)

