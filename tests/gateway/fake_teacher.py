"""A local stand-in for the teacher's OpenAI-compatible server: answers topic labels (chat completions and
the Responses API), streams them in pieces (in OpenAI's event formats), calls a `get_quote` function tool
when offered one, and returns deterministic embeddings. It records what it was sent."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from services.domain.settings import Settings


def fake_teacher() -> FastAPI:
    app = FastAPI()
    app.state.received = []

    def answer(messages: list[dict[str, Any]]) -> str:
        text = str(messages[-1].get("content", "")).lower()
        return "[[[Earnings]]]" if "profit" in text or "earnings" in text else "[[[Macro]]]"

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        app.state.received.append(body)
        if body.get("messages", [{}])[-1].get("content") == "please fail":
            return JSONResponse({"error": {"message": "teacher overloaded", "type": "server_error"}}, 503)
        content = answer(body["messages"])
        usage = {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16}
        if body.get("stream"):
            pieces = [content[:4], content[4:9], content[9:]]

            def events() -> Any:
                for i, piece in enumerate(pieces):
                    chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": body["model"],
                             "choices": [{"index": 0, "delta": ({"role": "assistant"} if i == 0 else {}) | {"content": piece},
                                          "finish_reason": None}]}
                    yield f"data: {json.dumps(chunk)}\n\n"
                done = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": body["model"],
                        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": usage}
                yield f"data: {json.dumps(done)}\n\ndata: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")
        return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                "usage": usage}

    @app.post("/v1/responses")
    async def responses(request: Request) -> Any:
        body = await request.json()
        app.state.received.append(body)
        source = body["input"]
        last = source if isinstance(source, str) else source[-1].get("content") or source[-1].get("output") or ""
        if last == "please refuse":
            return JSONResponse({"error": {"message": "the input violates the usage policy", "param": "input",
                                           "type": "invalid_request_error", "code": "policy"}}, 400)
        text = answer([{"content": last}])
        created = {"id": "resp_teacher1", "object": "response", "created_at": 1, "model": body["model"],
                   "status": "in_progress", "output": [], "error": None, "incomplete_details": None,
                   "instructions": body.get("instructions"), "metadata": {}, "parallel_tool_calls": True,
                   "temperature": body.get("temperature"), "top_p": None, "tool_choice": "auto",
                   "tools": body.get("tools") or [], "text": {"format": {"type": "text"}}, "usage": None}
        if any(t.get("name") == "get_quote" for t in body.get("tools") or []) and isinstance(source, str):
            item = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_quote",
                    "arguments": '{"ticker": "ACME"}', "status": "completed"}
        else:
            item = {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}]}
        usage = {"input_tokens": 20, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 5,
                 "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 25}
        done = created | {"status": "completed", "output": [item], "usage": usage}
        if not body.get("stream"):
            return done
        return StreamingResponse(response_events(created, item, done), media_type="text/event-stream")

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Any:
        body = await request.json()
        app.state.received.append(body)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        dims = int(body.get("dimensions") or 8)
        data = []
        for i, text in enumerate(inputs):
            digest = hashlib.sha256(str(text).encode()).digest()
            data.append({"object": "embedding", "index": i, "embedding": [b / 255 for b in digest[:dims]]})
        return {"object": "list", "model": body["model"], "data": data,
                "usage": {"prompt_tokens": 3, "total_tokens": 3}}

    return app


def response_events(created: dict[str, Any], item: dict[str, Any], done: dict[str, Any]) -> Iterator[str]:
    """A Responses API stream as OpenAI sends it: `event:` and `data:` lines, text in three deltas."""
    events: list[dict[str, Any]] = [{"type": "response.created", "response": created},
                                    {"type": "response.in_progress", "response": created}]
    if item["type"] == "message":
        text = item["content"][0]["text"]
        at = {"item_id": item["id"], "output_index": 0, "content_index": 0}
        events += [{"type": "response.output_item.added", "output_index": 0,
                    "item": item | {"status": "in_progress", "content": []}},
                   {"type": "response.content_part.added", **at,
                    "part": {"type": "output_text", "text": "", "annotations": []}}]
        events += [{"type": "response.output_text.delta", **at, "delta": piece, "logprobs": []}
                   for piece in (text[:4], text[4:9], text[9:])]
        events += [{"type": "response.output_text.done", **at, "text": text, "logprobs": []},
                   {"type": "response.content_part.done", **at, "part": item["content"][0]}]
    else:
        at = {"item_id": item["id"], "output_index": 0}
        events += [{"type": "response.output_item.added", "output_index": 0, "item": item | {"arguments": ""}},
                   {"type": "response.function_call_arguments.delta", **at, "delta": item["arguments"]},
                   {"type": "response.function_call_arguments.done", **at, "arguments": item["arguments"]}]
    events += [{"type": "response.output_item.done", "output_index": 0, "item": item},
               {"type": "response.completed", "response": done}]
    for number, event in enumerate(events):
        yield f"event: {event['type']}\ndata: {json.dumps(event | {'sequence_number': number})}\n\n"


def behind_teacher(settings: Settings, teacher_url: str, spool_dir: Path, **sections: Any) -> Settings:
    """`settings` with the gateway's teacher at `teacher_url` (as "big-teacher") and its spool under
    `spool_dir`; `sections` replace whole config sections (e.g. promotion={"monitor_share": 0.0})."""
    return Settings.model_validate({
        **settings.model_dump(), "teacher": {"model": "big-teacher", "base_url": f"{teacher_url}/v1"},
        "gateway": {"spool_path": str(spool_dir / "spool.jsonl")}, **sections})
