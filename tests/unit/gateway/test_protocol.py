"""The gateway's edge without HTTP: a body parsed once and forwarded as sent, OpenAI-shaped errors, and
who is calling (services/deployment/gateway/protocol.py)."""

from __future__ import annotations

import json

import pytest

from services.deployment.gateway.protocol import ApiKeys, Caller, ChatCompletionRequest, EmbeddingRequest, GatewayError
from services.domain.settings.gateway import GatewaySettings

BODY = {"model": "news", "messages": [{"role": "user", "content": "Fed holds"}], "temperature": 0,
        "response_format": {"type": "text"}, "metadata": {"client_id": "desk-9"}}


def parse(body: object, max_bytes: int = 10_000) -> ChatCompletionRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return ChatCompletionRequest.parse(raw, max_bytes=max_bytes)


def test_a_body_is_kept_as_sent_and_forwarded_without_our_metadata() -> None:
    request = parse(BODY)
    assert request.sent == BODY and request.model == "news" and request.stream is None
    assert request.upstream_body("big-teacher") == {
        "model": "big-teacher", "messages": BODY["messages"], "temperature": 0, "response_format": {"type": "text"}}
    assert request.sent == BODY, "the client's body is not changed"
    built = EmbeddingRequest(model="filings", input=["a", "b"])
    assert built.upstream_body("emb") == {"model": "emb", "input": ["a", "b"]}, "a request built in code forwards its set fields"


@pytest.mark.parametrize(("body", "status", "param", "message"), [
    (b"{nope", 400, None, "request body is not valid JSON"),
    (b"[1, 2]", 400, None, "request body must be a JSON object"),
    ({"messages": [{"role": "user", "content": "x"}]}, 400, "model", "`model` is required"),
    ({"model": "", "messages": [{"role": "user", "content": "x"}]}, 400, "model", "`model` is required"),
    ({"model": "news", "messages": []}, 400, "messages", "`messages` must be a non-empty list"),
    ({"model": "news", "messages": "hello"}, 400, "messages", "`messages` must be a non-empty list"),
    ({**BODY, "stream": "sometimes"}, 400, "stream", "`stream`: "),
    (b"x" * 20_000, 413, None, "request body exceeds 10000 bytes"),
])
def test_bad_bodies_are_openai_shaped_errors_naming_the_field(body: object, status: int, param: str | None,
                                                              message: str) -> None:
    with pytest.raises(GatewayError) as caught:
        parse(body)
    error = json.loads(caught.value.response().body)["error"]
    assert caught.value.status == status and error["param"] == param and error["message"].startswith(message)
    assert set(error) == {"message", "type", "param", "code"}


def test_embedding_requests_need_an_input() -> None:
    with pytest.raises(GatewayError) as caught:
        EmbeddingRequest.parse(b'{"model": "filings"}', max_bytes=1000)
    assert caught.value.param == "input" and caught.value.message == "`input` is required"
    assert EmbeddingRequest.parse(b'{"model": "f", "input": "one text", "dimensions": 4}', max_bytes=1000).dimensions == 4


def test_the_caller_is_the_keys_client_then_the_header_then_metadata() -> None:
    gateway = GatewaySettings.model_validate({"aliases": {"news": "news_topic"}, "auth_enabled": True, "keys": [
        {"name": "desk-3-key", "token": "sk-desk3", "client_id": "desk-3"}, {"name": "ops-key", "token": "sk-ops"}]})
    keys, request = ApiKeys(gateway), parse(BODY)
    key = keys.authenticate("Bearer sk-desk3")
    assert key is not None and key.name == "desk-3-key"
    assert Caller.of({"x-flywheel-client": "other"}, request, key=key, aliases=gateway.aliases) == Caller(
        "news_topic", "desk-3", "desk-3-key")
    ops = keys.authenticate("bearer  sk-ops ")
    assert Caller.of({}, request, key=ops, aliases=gateway.aliases).client == "ops-key", "a key without client: its name"
    assert Caller.of({"x-flywheel-client": "desk-7"}, request, key=None, aliases={}).client == "desk-7"
    assert Caller.of({}, request, key=None, aliases={}) == Caller("news", "desk-9"), "metadata; the model is the workload"
    assert Caller.of({"x-flywheel-workload": "w2"}, parse({**BODY, "metadata": None}), key=None,
                     aliases=gateway.aliases) == Caller("w2", "default")
    for header in ("", "Bearer", "Bearer sk-wrong", "Basic sk-desk3"):
        with pytest.raises(GatewayError) as caught:
            keys.authenticate(header)
        assert caught.value.status == 401 and caught.value.code == "invalid_api_key"
    assert ApiKeys(GatewaySettings()).authenticate("") is None, "no keys required: anyone"
