"""What the gateway speaks at its edge: typed OpenAI requests (unknown fields kept and forwarded),
OpenAI-shaped errors, and the `Caller` (workload, client, API key) read once per request."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Self

import pydantic_core
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from services.domain.settings.api import ApiToken
from services.domain.settings.gateway import GatewaySettings

JSON = "application/json"


class GatewayError(Exception):
    """An OpenAI-format error: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, param=self.param, code=self.code)

    def response(self) -> Response:
        return json_response(self.body(), self.status, self.headers)


def too_large(max_bytes: int) -> GatewayError:
    return GatewayError(413, f"request body exceeds {max_bytes} bytes", code="too_large")


def error_body(message: str, type_: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON response serialised once by pydantic-core (no re-encoding through Starlette's JSONResponse)."""
    return Response(pydantic_core.to_json(body), status, headers, media_type=JSON)


# What a client is told when a field the gateway reads is wrong (OpenAI's `param` names the field).
FIELD_ERRORS = {
    "model": "`model` is required: name a workload alias",
    "messages": "`messages` must be a non-empty list",
    "input": "`input` is required",
    "input_type": "`input_type` must be `query` or `passage`",
}


class RequestBody(BaseModel):
    """A request body: the fields the gateway reads are typed; every other field is kept as sent and
    forwarded to whoever answers (`sent`: the body exactly as parsed)."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, description="A workload alias (`gateway.aliases`) or a workload id.")
    metadata: dict[str, Any] | None = Field(None, description="OpenAI metadata; `client_id` names the client. "
                                                              "Not forwarded to the teacher.")
    _sent: dict[str, Any] = PrivateAttr(default_factory=dict)

    @classmethod
    def parse(cls, raw: bytes, *, max_bytes: int) -> Self:
        """The body parsed once (pydantic-core's JSON parser) and checked; a 413 or 400 GatewayError otherwise."""
        if len(raw) > max_bytes:
            raise too_large(max_bytes)
        try:
            body = pydantic_core.from_json(raw)
        except ValueError as exc:
            raise GatewayError(400, f"request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise GatewayError(400, "request body must be a JSON object")
        try:
            request = cls.model_validate(body)
        except ValidationError as exc:
            error = exc.errors()[0]
            field = str(error["loc"][0]) if error["loc"] else ""
            raise GatewayError(400, FIELD_ERRORS.get(field, f"`{field}`: {error['msg']}"), param=field or None) from None
        request._sent = body
        return request

    @property
    def sent(self) -> dict[str, Any]:
        """The body as the client sent it (kept by `parse`; the set fields for a request built in code)."""
        return self._sent or self.model_dump(exclude_unset=True)

    def upstream_body(self, model: str) -> dict[str, Any]:
        """The body for the teacher: as sent, naming the teacher's `model`, without our `metadata`."""
        return {k: v for k, v in self.sent.items() if k != "metadata"} | {"model": model}


class ChatCompletionRequest(RequestBody):
    """`POST /v1/chat/completions`."""

    messages: list[dict[str, Any]] = Field(min_length=1, description="The conversation (OpenAI message objects).")
    stream: bool | None = Field(None, description="Answer as server-sent events.")


class EmbeddingRequest(RequestBody):
    """`POST /v1/embeddings`."""

    input: str | list[Any] = Field(description="A text, or a list of texts (or token arrays).")
    dimensions: int | None = Field(None, ge=1, description="Matryoshka truncation of the returned vectors.")
    input_type: Literal["query", "passage"] | None = Field(
        None, description="What the inputs are, for retrieval (NVIDIA's convention; the openai client sends it in "
                          "`extra_body`): `query` or `passage`. Forwarded to the teacher and logged.")


class ResponsesRequest(RequestBody):
    """`POST /v1/responses` (OpenAI's Responses API)."""

    input: str | list[Any] = Field(description="A text, or a list of input items (messages, function calls and "
                                               "their outputs).")
    stream: bool | None = Field(None, description="Answer as server-sent events.")
    previous_response_id: str | None = Field(
        None, description="Continue a conversation the teacher stored: always answered by the teacher, not logged.")


class ApiKeys:
    """The gateway's client keys, encoded once; `authenticate` compares in constant time."""

    def __init__(self, gateway: GatewaySettings) -> None:
        self.required = gateway.auth_enabled
        self._keys = [(key.token.get_secret_value().encode(), key) for key in gateway.keys]

    def authenticate(self, authorization: str) -> ApiToken | None:
        """The key an `Authorization: Bearer <key>` header names; 401 when keys are required and it names none."""
        if not self.required:
            return None
        scheme, _, token = authorization.partition(" ")
        presented = token.strip().encode()
        match = next((key for secret, key in self._keys
                      if scheme.lower() == "bearer" and hmac.compare_digest(secret, presented)), None)
        if match is None:
            raise GatewayError(401, "invalid or missing API key (Authorization: Bearer <key>)",
                               "authentication_error", code="invalid_api_key")
        return match


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking: the workload (whose route answers) and the client (logged with the call)."""

    workload: str
    client: str
    key_name: str | None = None

    @classmethod
    def of(cls, headers: Mapping[str, str], request: RequestBody, *, key: ApiToken | None,
           aliases: Mapping[str, str]) -> Caller:
        """The workload: the `X-Flywheel-Workload` header, else the alias `model` names (every workload id is
        its own alias). The client: the API key's, else `X-Flywheel-Client`, else OpenAI `metadata.client_id`."""
        workload = headers.get("x-flywheel-workload") or aliases.get(request.model, request.model)
        key_client = (key.client_id or key.name) if key is not None else None
        client = key_client or headers.get("x-flywheel-client") or (request.metadata or {}).get("client_id") or "default"
        return cls(workload, str(client), key.name if key is not None else None)
