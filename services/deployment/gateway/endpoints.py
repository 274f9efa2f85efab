"""The gateway's HTTP endpoints: thin, each reads the request once (`read`) and hands it to the service
built at start-up (`app.state`, set by app.py's lifespan)."""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import generate_latest

from services.deployment.gateway.protocol import (
    JSON,
    Caller,
    ChatCompletionRequest,
    EmbeddingRequest,
    RequestBody,
    ResponsesRequest,
    json_response,
    too_large,
)
from services.deployment.gateway.serving_chat import ChatService
from services.deployment.gateway.serving_embeddings import EmbeddingService
from services.deployment.gateway.serving_responses import ResponsesService

RequestT = TypeVar("RequestT", bound=RequestBody)


def _documented(model: type[RequestBody]) -> dict[str, Any]:
    """The OpenAPI request body of an endpoint that reads its body itself (parsed once, not by FastAPI)."""
    return {"requestBody": {"required": True, "content": {JSON: {"schema": model.model_json_schema()}}}}


async def read(request: Request, model: type[RequestT]) -> tuple[RequestT, Caller]:
    """The API key (checked before the body is read), the body parsed once, and who is calling."""
    gateway = request.app.state.settings.gateway
    key = request.app.state.keys.authenticate(request.headers.get("authorization", ""))
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > gateway.max_request_bytes:
        raise too_large(gateway.max_request_bytes)  # refused before it is read
    parsed = model.parse(await request.body(), max_bytes=gateway.max_request_bytes)
    return parsed, Caller.of(request.headers, parsed, key=key, aliases=gateway.aliases)


async def create_chat_completion(request: Request) -> Response:
    """OpenAI chat completions (streamed or not), answered by the workload's route."""
    chat: ChatService = request.app.state.chat
    return await chat.create(*await read(request, ChatCompletionRequest))


async def create_embeddings(request: Request) -> Response:
    """OpenAI embeddings, answered by the workload's route."""
    embeddings: EmbeddingService = request.app.state.embeddings
    return await embeddings.create(*await read(request, EmbeddingRequest))


async def create_response(request: Request) -> Response:
    """OpenAI Responses API (streamed or not), answered by the workload's route."""
    responses: ResponsesService = request.app.state.responses
    return await responses.create(*await read(request, ResponsesRequest))


async def list_models(request: Request) -> Response:
    """Every workload alias and workload id, as OpenAI models."""
    settings = request.app.state.settings
    names = sorted(set(settings.gateway.aliases) | set(settings.workloads))
    return json_response({"object": "list", "data": [
        {"id": n, "object": "model", "created": 0, "owned_by": "flywheel"} for n in names]})


async def prometheus(request: Request) -> PlainTextResponse:
    """Prometheus metrics."""
    return PlainTextResponse(generate_latest(request.app.state.metrics.registry).decode(),
                             media_type="text/plain; version=0.0.4")


async def health() -> dict[str, str]:
    """Liveness."""
    return {"status": "ok"}


def add_endpoints(app: FastAPI) -> None:
    """Put the endpoints on `app` itself (an included router would add a matching layer to every request)."""
    app.add_api_route("/v1/chat/completions", create_chat_completion, methods=["POST"],
                      openapi_extra=_documented(ChatCompletionRequest))
    app.add_api_route("/v1/embeddings", create_embeddings, methods=["POST"], openapi_extra=_documented(EmbeddingRequest))
    app.add_api_route("/v1/responses", create_response, methods=["POST"], openapi_extra=_documented(ResponsesRequest))
    app.add_api_route("/v1/models", list_models, methods=["GET"])
    app.add_api_route("/metrics", prometheus, methods=["GET"], response_class=PlainTextResponse)
    app.add_api_route("/health", health, methods=["GET"])
