"""Reassemble a streamed chat completion (server-sent events) into the response it stands for,
so a streamed teacher answer is logged exactly like a non-streamed one."""

from __future__ import annotations

import json
from typing import Any


class StreamAssembler:
    def __init__(self) -> None:
        self.choices: dict[int, dict[str, Any]] = {}
        self.usage: dict[str, Any] | None = None
        self.model: str | None = None
        self.id: str | None = None
        self._buffer = b""

    def feed(self, chunk: bytes) -> None:
        self._buffer += chunk
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            self._line(line.strip())

    def _line(self, line: bytes) -> None:
        if not line.startswith(b"data:"):
            return
        data = line[5:].strip()
        if not data or data == b"[DONE]":
            return
        try:
            event = json.loads(data)
        except json.JSONDecodeError:
            return
        self.id = self.id or event.get("id")
        self.model = self.model or event.get("model")
        if event.get("usage"):
            self.usage = event["usage"]
        for choice in event.get("choices") or []:
            index = int(choice.get("index", 0))
            target = self.choices.setdefault(index, {"index": index, "message": {"role": "assistant", "content": ""},
                                                     "finish_reason": None})
            delta = choice.get("delta") or {}
            if delta.get("content"):
                target["message"]["content"] += delta["content"]
            for call in delta.get("tool_calls") or []:
                calls = target["message"].setdefault("tool_calls", [])
                position = int(call.get("index", len(calls)))
                while len(calls) <= position:
                    calls.append({"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
                slot = calls[position]
                slot["id"] = call.get("id") or slot["id"]
                function = call.get("function") or {}
                slot["function"]["name"] += function.get("name") or ""
                slot["function"]["arguments"] += function.get("arguments") or ""
            if choice.get("finish_reason"):
                target["finish_reason"] = choice["finish_reason"]

    def response(self) -> dict[str, Any]:
        self._line(self._buffer.strip())
        choices = [self.choices[i] for i in sorted(self.choices)]
        for choice in choices:
            if choice["message"].get("tool_calls") and not choice["message"]["content"]:
                choice["message"]["content"] = None
        body: dict[str, Any] = {"id": self.id, "object": "chat.completion", "model": self.model, "choices": choices}
        if self.usage:
            body["usage"] = self.usage
        return body
