"""The HTTP API: bind address, bearer tokens and their scopes."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator

from services.domain.settings._section import _Section


class ApiToken(_Section):
    name: str = Field(min_length=1, description="Who holds the token (shown in audit events).")
    token: SecretStr = Field(description="The bearer token (a secret: set it from the environment or a Secret).")
    scopes: list[Literal["read", "write"]] = Field(["read"], description="read: GET calls; write: everything.")
    client_id: str | None = Field(None, description="The client this token belongs to (used by the gateway).")


class AuthSettings(_Section):
    enabled: bool = Field(False, description="Require bearer tokens (on in the helm chart; off in the embedded demo).")
    tokens: list[ApiToken] = Field(default_factory=list)

    @model_validator(mode="after")
    def _has_a_writer(self) -> AuthSettings:
        if self.enabled and not any("write" in t.scopes for t in self.tokens):
            raise ValueError("api.auth.enabled needs at least one token with the 'write' scope in api.auth.tokens")
        return self


class ApiSettings(_Section):
    host: str = Field("127.0.0.1", description="Bind address of `flywheel serve api`.")
    port: int = Field(8000, ge=1, le=65535)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    max_request_bytes: int = Field(64 * 2**20, ge=1024, description="Largest request body (POST /api/logs).")
    embedded_worker: bool = Field(
        True, description="embedded queue: run a worker for every queue inside `flywheel serve api`.")
