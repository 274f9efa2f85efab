"""A local stand-in for the teacher's OpenAI-compatible server: answers topic labels, streams
them in pieces, and returns deterministic embeddings. It records what it was sent."""

from __future__ import annotations

import hashlib
import json
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


def behind_teacher(settings: Settings, teacher_url: str, spool_dir: Path, **sections: Any) -> Settings:
    """`settings` with the gateway's teacher at `teacher_url` (as "big-teacher") and its spool under
    `spool_dir`; `sections` replace whole config sections (e.g. promotion={"monitor_share": 0.0})."""
    return Settings.model_validate({
        **settings.model_dump(), "teacher": {"model": "big-teacher", "base_url": f"{teacher_url}/v1"},
        "gateway": {"spool_path": str(spool_dir / "spool.jsonl")}, **sections})
