"""The teacher's answers reach the client as the teacher sent them (bytes forwarded, not re-encoded),
are logged parsed after the response, and what is not JSON comes back as an OpenAI-shaped error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import Response

from services.deployment.gateway.app import create_gateway
from services.deployment.traffic_log import TrafficLogger
from services.domain.queue import make_celery_app
from tests.gateway.test_gateway import settings_for
from tests.servers import serve

# Spacing, key order and a field no OpenAI schema names: all must survive the hop.
ANSWER = (b'{"id":"c-1",  "object":"chat.completion","model":"big-teacher","x_vendor":{"cached":true},'
          b'"choices":[{"index":0,"message":{"role":"assistant","content":"[[[Macro]]]"},"finish_reason":"stop"}],'
          b'"usage":{"prompt_tokens":7,"completion_tokens":3}}')


def odd_teacher() -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        content = body["messages"][-1]["content"]
        if content == "crash":
            return Response(b"upstream exploded", 500, media_type="text/plain")
        if content == "busy":
            return Response(b'{"error": {"message": "slow down", "type": "rate_limit"}}', 429, media_type="application/json")
        return Response(ANSWER, media_type="application/json")

    @app.post("/v1/embeddings")
    async def embeddings() -> Any:
        return Response(b"<html>bad gateway</html>", 502, media_type="text/html")

    return app


def test_teacher_bytes_are_forwarded_and_logged_parsed(tmp_path: Path) -> None:
    with serve(odd_teacher()) as teacher_url:
        settings = settings_for(tmp_path, teacher_url)
        logger = TrafficLogger(make_celery_app(settings.queue, name="t"), settings.gateway.spool_path)
        with serve(create_gateway(settings, logger=logger)) as gateway_url:
            def chat(content: str, **extra: Any) -> httpx.Response:
                return httpx.post(f"{gateway_url}/v1/chat/completions", json={
                    "model": "news", "messages": [{"role": "user", "content": content}], **extra})

            answered = chat("Fed holds", metadata={"client_id": "desk-2"})
            assert answered.status_code == 200 and answered.content == ANSWER
            assert answered.headers["content-type"] == "application/json"
            assert answered.headers["x-flywheel-served-by"] == "teacher"

            crashed = chat("crash")
            assert crashed.status_code == 500
            assert crashed.json()["error"] == {"message": "upstream exploded", "type": "upstream_error"}
            for stream in (False, True):
                busy = chat("busy", stream=stream)
                assert busy.status_code == 429 and busy.json()["error"]["message"] == "slow down", "the teacher's error, whole"
            embedded = httpx.post(f"{gateway_url}/v1/embeddings", json={"model": "news", "input": "x"})
            assert embedded.status_code == 502 and embedded.json()["error"]["type"] == "upstream_error"
    logged = []
    while not logger._queue.empty():
        logged.append(logger._queue.get_nowait())
    assert len(logged) == 1, "only the answered call is logged"
    (record,) = logged
    assert record["client_id"] == "desk-2" and record["workload_id"] == "news_topic"
    assert record["response"]["x_vendor"] == {"cached": True} and record["response"]["usage"]["prompt_tokens"] == 7
    assert record["request"]["model"] == "big-teacher" and "metadata" not in record["request"]
