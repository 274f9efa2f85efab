"""A teacher that fails on request, for the gateway's resilience tests; run in its own process
(`python -m tests.gateway.faulty_teacher PORT`) so a dropped connection is a real one.

The last user message says what to do:
- `fail:STATUS:N[:RETRY_AFTER]`: the first N calls with this message get STATUS (with Retry-After), later ones an answer;
- `slow:S`: answer after S seconds;
- `drop-stream`: stream one chunk, then drop the connection;
- `stall-stream:S`: stream one chunk, then wait S seconds before the rest;
- anything else: answer `[[[Macro]]]` at once.
Embeddings read the first input the same way (`fail:...` only); responses their input (`fail:...`, `drop-stream`).
`GET /calls` tells how many calls each message got.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from services.domain import responses_api

USAGE = {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16}


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> str:
    body = {"id": "chatcmpl-f", "object": "chat.completion.chunk", "created": 1, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if finish:
        body["usage"] = USAGE
    return f"data: {json.dumps(body)}\n\n"


def faulty_teacher() -> FastAPI:
    app = FastAPI()
    calls: Counter[str] = Counter()

    @app.get("/calls")
    async def counted() -> dict[str, int]:
        return dict(calls)

    def failure(said: str) -> Response | None:
        """The error `said` asks for on this call, if any."""
        calls[said] += 1
        command, _, argument = said.partition(":")
        if command != "fail":
            return None
        status, times, *retry_after = argument.split(":")
        if calls[said] > int(times):
            return None
        headers = {"Retry-After": retry_after[0]} if retry_after else None
        return JSONResponse({"error": {"message": f"teacher says {status}", "type": "server_error"}}, int(status),
                            headers=headers)

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        body = await request.json()
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        refused = failure(str(texts[0]))
        return refused or JSONResponse({"object": "list", "model": body["model"], "data": [
            {"object": "embedding", "index": i, "embedding": [0.5] * 16} for i in range(len(texts))]})

    @app.post("/v1/responses")
    async def responses(request: Request) -> Response:
        body = await request.json()
        said = body["input"] if isinstance(body["input"], str) else str(body["input"][-1].get("content", ""))
        refused = failure(said)
        if refused is not None:
            return refused
        answer = {"id": "chatcmpl-f", "created": 1, "model": body["model"], "usage": USAGE,
                  "choices": [{"index": 0, "message": {"role": "assistant", "content": "[[[Macro]]]"}}]}
        response = responses_api.as_response(answer, body) | {"model": body["model"]}
        if body.get("stream"):
            async def events() -> Any:
                for i, event in enumerate(responses_api.response_events(response)):
                    if i == 2 and said == "drop-stream":
                        raise ConnectionResetError("dropped on purpose")
                    yield event

            return StreamingResponse(events(), media_type="text/event-stream")
        return JSONResponse(response)

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        body = await request.json()
        said = str(body["messages"][-1].get("content", ""))
        refused = failure(said)
        if refused is not None:
            return refused
        command, _, argument = said.partition(":")
        if command == "slow":
            await asyncio.sleep(float(argument))
        model = body["model"]
        if body.get("stream"):
            async def events() -> Any:
                yield _chunk(model, {"role": "assistant", "content": "[[[Ma"})
                if command == "drop-stream":
                    raise ConnectionResetError("dropped on purpose")  # uvicorn closes the connection mid-body
                if command == "stall-stream":
                    await asyncio.sleep(float(argument))
                yield _chunk(model, {"content": "cro]]]"})
                yield _chunk(model, {}, "stop") + "data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")
        return JSONResponse({"id": "chatcmpl-f", "object": "chat.completion", "created": 1, "model": model,
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": "[[[Macro]]]"},
                                          "finish_reason": "stop"}], "usage": USAGE})

    return app


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(faulty_teacher(), host="127.0.0.1", port=int(sys.argv[1]), log_level="critical")
