"""A teacher stand-in that answers from recorded teacher logs: the demo and offline trials need an
OpenAI-compatible teacher behind the gateway, and the only teacher this project can ship is the one
already in the logs. A request whose messages match a logged call gets that call's answer (streamed
too); `/v1/responses` answers a Responses API request whose chat view (services/domain/responses_api.py) has
a logged call's messages, as a Responses object; any other request gets a typed 404 that says the replay holds no answer for it, never an
invented one. `flywheel serve replay-teacher LOGS...` runs it.

Its latency is a lookup, not an LLM's: do not read it as the teacher's latency.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from services.domain.records import canonical_json
from services.domain.responses_api import NotChatShaped, as_response, chat_request, response_events


def messages_key(messages: Any) -> str:
    """The match key of a request: its messages, canonically (role and content; names and tool calls)."""
    return hashlib.sha256(canonical_json(messages).encode()).hexdigest()


def load_recording(paths: Iterable[Path]) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """(answers by messages key, counts) from JSON Lines files (plain or .gz) of logged calls.
    Lines that are not chat calls with an answer are skipped and counted, not fatal."""
    answers: dict[str, dict[str, Any]] = {}
    counts = {"chat_calls": 0, "skipped": 0}
    for path in paths:
        with open(path, "rb") as raw:
            compressed = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            stream: Any = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
            for line in stream:
                try:
                    record = json.loads(line)
                    messages = record["request"]["messages"]
                    choices = record["response"]["choices"]
                except (ValueError, KeyError, TypeError):
                    counts["skipped"] += 1
                    continue
                if not choices:
                    counts["skipped"] += 1
                    continue
                answers[messages_key(messages)] = record["response"]
                counts["chat_calls"] += 1
    return answers, counts


def create_replay_teacher(answers: dict[str, dict[str, Any]], *, model: str = "replayed-teacher") -> FastAPI:
    app = FastAPI(title="Replay teacher (answers from recorded teacher logs)", version="0.1.0")
    app.state.hits = app.state.misses = 0

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model, "object": "model", "created": 0, "owned_by": "replay"}]}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "answers": len(answers), "hits": app.state.hits, "misses": app.state.misses}

    def missed(what: str) -> JSONResponse:
        app.state.misses += 1
        return _error(404, f"the replay teacher holds no recorded answer for {what} (it only replays logged calls; "
                           "point teacher.base_url at a real teacher for new prompts)", "not_found_error",
                      code="not_recorded")

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "request body is not valid JSON", "invalid_request_error")
        recorded = answers.get(messages_key(body.get("messages"))) if isinstance(body, dict) else None
        if recorded is None:
            return missed("these messages")
        app.state.hits += 1
        answer = {**recorded, "id": f"chatcmpl-replay-{uuid.uuid4().hex[:12]}", "object": "chat.completion",
                  "created": int(time.time()), "model": body.get("model") or model}
        if body.get("stream"):
            return StreamingResponse(_events(answer), media_type="text/event-stream")
        return JSONResponse(answer)

    @app.post("/v1/responses")
    async def responses(request: Request) -> Any:
        try:
            body = await request.json()
            messages = chat_request(body)["messages"] if isinstance(body, dict) else None
        except ValueError as exc:  # not JSON, or no chat equivalent (NotChatShaped)
            kind = "has no chat equivalent" if isinstance(exc, NotChatShaped) else "is not valid JSON"
            return _error(400, f"request body {kind}: {exc}", "invalid_request_error")
        recorded = answers.get(messages_key(messages)) if messages is not None else None
        if recorded is None:
            return missed("this input")
        app.state.hits += 1
        answer = as_response({**recorded, "created": int(time.time()), "model": body.get("model") or model}, body)
        if body.get("stream"):
            return StreamingResponse(response_events(answer), media_type="text/event-stream")
        return JSONResponse(answer)

    return app


def _events(answer: dict[str, Any]) -> Iterator[str]:
    base = {"id": answer["id"], "object": "chat.completion.chunk", "created": answer["created"], "model": answer["model"]}
    for choice in answer.get("choices", []):
        message = choice.get("message") or {}
        delta = {"role": "assistant", "content": message.get("content") or ""}
        yield f"data: {json.dumps(base | {'choices': [{'index': choice.get('index', 0), 'delta': delta, 'finish_reason': None}]})}\n\n"
        yield f"data: {json.dumps(base | {'choices': [{'index': choice.get('index', 0), 'delta': {}, 'finish_reason': choice.get('finish_reason') or 'stop'}]} | ({'usage': answer['usage']} if answer.get('usage') else {}))}\n\n"
    yield "data: [DONE]\n\n"


def _error(status: int, message: str, type_: str, code: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_, "param": None, "code": code}}, status)
