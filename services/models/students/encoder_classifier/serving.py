"""How a served encoder classifier answers a chat request: the label in the teacher's format, with its confidence."""

from __future__ import annotations

from typing import Any

from services.models.students.kind import ChatRoute


def chat(runner: Any, route: ChatRoute, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The head's answer and its confidence (`runtime.confidence_of`)."""
    (text, confidence), = runner.answer([{"messages": body["messages"], "tools": body.get("tools")}])
    return str(text), {"confidence": round(confidence, 6)}
