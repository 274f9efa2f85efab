"""OpenAI's Responses API (`POST /v1/responses`) seen as the chat completions the datastore understands.

Pure functions, no I/O: a Responses request body -> a chat request (`chat_request`), a Responses response
object -> a chat response (`chat_response`), a chat answer (a student's) -> a Responses response object
(`as_response`) and the server-sent events of that answer (`response_events`), in the order the official
`openai` client's `responses.create(stream=True)` and `responses.stream()` read them.

What has no chat equivalent raises `NotChatShaped` (the gateway forwards such a request to the teacher and
does not log it): built-in tools (web search, file search, computer use, ...), their calls, and references to
items stored on the server (`item_reference`). Reasoning items carry nothing a chat record holds and are left
out of the chat view; the body as sent keeps them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pydantic_core

# Request fields that mean the same in both APIs (copied as they are); `max_output_tokens` is renamed.
_SAME_FIELDS = ("temperature", "top_p", "parallel_tool_calls", "user", "seed", "stop")
_MESSAGE_ROLES = frozenset({"user", "assistant", "system", "developer"})


class NotChatShaped(ValueError):
    """A Responses body or object that no chat completion can stand for; the message says which part."""


def chat_request(body: dict[str, Any]) -> dict[str, Any]:
    """The chat completions request a Responses request body stands for (`instructions` -> system message,
    `input` -> messages, function tools -> chat tools, sampling parameters kept)."""
    messages: list[dict[str, Any]] = []
    if isinstance(body.get("instructions"), str) and body["instructions"]:
        messages.append({"role": "system", "content": body["instructions"]})
    source = body.get("input")
    if isinstance(source, str):
        messages.append({"role": "user", "content": source})
    elif isinstance(source, list):
        for index, item in enumerate(source):
            _add_item(messages, item, f"input[{index}]")
    else:
        raise NotChatShaped("`input` must be a string or a list of input items")
    if not messages:
        raise NotChatShaped("the request holds no message (empty `input`, no `instructions`)")
    chat: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    if body.get("tools"):
        chat["tools"] = [_chat_tool(tool, f"tools[{i}]") for i, tool in enumerate(body["tools"])]
    if body.get("tool_choice") is not None:
        chat["tool_choice"] = _chat_tool_choice(body["tool_choice"])
    for field in _SAME_FIELDS:
        if body.get(field) is not None:
            chat[field] = body[field]
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    response_format = _response_format((body.get("text") or {}).get("format"))
    if response_format is not None:
        chat["response_format"] = response_format
    return chat


def _add_item(messages: list[dict[str, Any]], item: Any, where: str) -> None:
    if not isinstance(item, dict):
        raise NotChatShaped(f"{where} is not an object")
    kind = item.get("type", "message")
    if kind == "message":
        role = item.get("role")
        if role not in _MESSAGE_ROLES:
            raise NotChatShaped(f"{where}: message role {role!r} is not one of {sorted(_MESSAGE_ROLES)}")
        messages.append({"role": role, "content": _chat_content(item.get("content"), role, where)})
    elif kind == "function_call":
        call = _tool_call(item, where)
        last = messages[-1] if messages else None
        # Chat puts a turn's calls on one assistant message, which the tool messages then answer.
        if last is not None and last["role"] == "assistant":
            last.setdefault("tool_calls", []).append(call)
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind == "function_call_output":
        output = item.get("output")
        content = output if isinstance(output, str) else _chat_content(output, "tool", where)
        messages.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": content})
    elif kind == "reasoning":
        return
    else:
        raise NotChatShaped(f"{where}: a {kind!r} item has no chat equivalent")


def _tool_call(item: dict[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(item.get("name"), str) or not isinstance(item.get("arguments"), str):
        raise NotChatShaped(f"{where}: a function_call needs `name` and `arguments` (strings)")
    return {"id": item.get("call_id"), "type": "function",
            "function": {"name": item["name"], "arguments": item["arguments"]}}


def _chat_content(content: Any, role: str, where: str) -> str | list[dict[str, Any]]:
    """A message's content: a string stays a string; parts become chat parts (an assistant's, one string)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise NotChatShaped(f"{where}: `content` must be a string or a list of parts")
    parts = [_chat_part(part, f"{where}.content[{i}]") for i, part in enumerate(content)]
    if role == "assistant" or (len(parts) == 1 and parts[0]["type"] == "text"):
        return "".join(str(p.get("text", "")) for p in parts)
    return parts


def _chat_part(part: Any, where: str) -> dict[str, Any]:
    if not isinstance(part, dict):
        raise NotChatShaped(f"{where} is not an object")
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        return {"type": "text", "text": part.get("text", "")}
    if kind == "refusal":
        return {"type": "text", "text": part.get("refusal", "")}
    if kind == "input_image":
        image = {"url": part.get("image_url") or part.get("file_id")}
        return {"type": "image_url", "image_url": image | ({"detail": part["detail"]} if part.get("detail") else {})}
    if kind == "input_file":
        return {"type": "file", "file": {k: part[k] for k in ("file_id", "file_data", "filename") if k in part}}
    raise NotChatShaped(f"{where}: a {kind!r} content part has no chat equivalent")


def _chat_tool(tool: Any, where: str) -> dict[str, Any]:
    if not isinstance(tool, dict) or tool.get("type") != "function":
        kind = tool.get("type") if isinstance(tool, dict) else type(tool).__name__
        raise NotChatShaped(f"{where}: a built-in {kind!r} tool has no chat equivalent (only function tools)")
    function = {k: tool[k] for k in ("name", "description", "parameters", "strict") if tool.get(k) is not None}
    return {"type": "function", "function": function}


def _chat_tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    if isinstance(choice, dict):
        raise NotChatShaped(f"tool_choice {choice.get('type')!r} has no chat equivalent")
    return choice


def _response_format(text_format: Any) -> dict[str, Any] | None:
    if not isinstance(text_format, dict) or text_format.get("type") in (None, "text"):
        return None
    if text_format["type"] == "json_schema":
        schema = {k: text_format[k] for k in ("name", "description", "schema", "strict") if k in text_format}
        return {"type": "json_schema", "json_schema": schema}
    return {"type": text_format["type"]}


def chat_response(response: dict[str, Any]) -> dict[str, Any]:
    """The chat completion a Responses response object stands for: output text -> the assistant's content,
    function calls -> tool_calls, usage input/output tokens -> prompt/completion tokens."""
    output = response.get("output")
    if not isinstance(output, list):
        raise NotChatShaped("the response has no `output` list")
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for index, item in enumerate(output):
        where = f"output[{index}]"
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "message":
            content = _chat_content(item.get("content") or [], "assistant", where)
            texts.append(content if isinstance(content, str) else "")
        elif kind == "function_call":
            calls.append(_tool_call(item, where))
        elif kind != "reasoning":
            raise NotChatShaped(f"{where}: a {kind!r} output item has no chat equivalent")
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    incomplete = (response.get("incomplete_details") or {}).get("reason")
    finish = "tool_calls" if calls else "length" if incomplete == "max_output_tokens" else "stop"
    chat: dict[str, Any] = {"id": response.get("id"), "object": "chat.completion",
                            "created": response.get("created_at"), "model": response.get("model"),
                            "choices": [{"index": 0, "message": message, "finish_reason": finish}]}
    usage = response.get("usage")
    if isinstance(usage, dict):
        prompt, completion = int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)
        chat["usage"] = {"prompt_tokens": prompt, "completion_tokens": completion,
                         "total_tokens": int(usage.get("total_tokens") or prompt + completion)}
    return chat


def as_response(answer: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """A chat completion (a student's answer) as the Responses object the client asked for."""
    message = answer["choices"][0]["message"]
    suffix = uuid.uuid4().hex
    output: list[dict[str, Any]] = []
    text = message.get("content")
    if text or not message.get("tool_calls"):
        output.append({"type": "message", "id": f"msg_{suffix}", "status": "completed", "role": "assistant",
                       "content": [{"type": "output_text", "text": text or "", "annotations": []}]})
    for index, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") or {}
        output.append({"type": "function_call", "id": f"fc_{suffix}_{index}", "status": "completed",
                       "call_id": call.get("id") or f"call_{suffix}_{index}", "name": function.get("name", ""),
                       "arguments": function.get("arguments", "")})
    usage = answer.get("usage") or {}
    prompt, completion = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    return {
        "id": f"resp_{suffix}", "object": "response", "created_at": answer.get("created") or int(time.time()),
        "status": "completed", "model": answer.get("model"), "output": output, "error": None,
        "incomplete_details": None, "instructions": request.get("instructions"),
        "metadata": request.get("metadata") or {}, "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "temperature": request.get("temperature"), "top_p": request.get("top_p"),
        "max_output_tokens": request.get("max_output_tokens"), "tool_choice": request.get("tool_choice", "auto"),
        "tools": request.get("tools") or [], "text": request.get("text") or {"format": {"type": "text"}},
        "usage": {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0},
                  "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": 0},
                  "total_tokens": prompt + completion},
    }


def response_events(response: dict[str, Any]) -> Iterator[bytes]:
    """A complete Responses object as the server-sent events OpenAI streams for it (each item added, its
    text or arguments in one delta, done, then `response.completed` with the whole object)."""
    sequence = iter(range(1 << 62))

    def event(kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": next(sequence), **fields}
        return b"event: " + kind.encode() + b"\ndata: " + pydantic_core.to_json(data) + b"\n\n"

    yield event("response.created", response={**response, "status": "in_progress", "output": [], "usage": None})
    yield event("response.in_progress", response={**response, "status": "in_progress", "output": [], "usage": None})
    for index, item in enumerate(response["output"]):
        if item["type"] == "message":
            yield event("response.output_item.added", output_index=index,
                        item={**item, "status": "in_progress", "content": []})
            for part_index, part in enumerate(item["content"]):
                at = {"item_id": item["id"], "output_index": index, "content_index": part_index}
                yield event("response.content_part.added", **at, part={**part, "text": ""})
                yield event("response.output_text.delta", **at, delta=part["text"], logprobs=[])
                yield event("response.output_text.done", **at, text=part["text"], logprobs=[])
                yield event("response.content_part.done", **at, part=part)
        else:
            yield event("response.output_item.added", output_index=index,
                        item={**item, "status": "in_progress", "arguments": ""})
            at = {"item_id": item["id"], "output_index": index}
            yield event("response.function_call_arguments.delta", **at, delta=item["arguments"])
            yield event("response.function_call_arguments.done", **at, arguments=item["arguments"])
        yield event("response.output_item.done", output_index=index, item=item)
    yield event("response.completed", response=response)


class CompletedResponse:
    """Watches a streamed Responses answer (server-sent events, fed as the bytes arrive) for its
    `response.completed` event, the whole response object; only that event's data is parsed."""

    def __init__(self) -> None:
        self.response: dict[str, Any] | None = None
        self._buffer = b""

    def feed(self, chunk: bytes) -> None:
        self._buffer += chunk
        if b"\n" not in chunk:
            return
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self._line(line.strip())

    def finish(self) -> dict[str, Any] | None:
        """The completed response, or None when the stream ended before `response.completed`."""
        self._line(self._buffer.strip())
        self._buffer = b""
        return self.response

    def _line(self, line: bytes) -> None:
        if not line.startswith(b"data:") or b"response.completed" not in line:
            return
        try:
            event = pydantic_core.from_json(line[5:].strip())
        except ValueError:
            return
        if isinstance(event, dict) and event.get("type") == "response.completed" and isinstance(
                event.get("response"), dict):
            self.response = event["response"]
