"""One text convention for chat and tool calls, used alike to train, evaluate and serve students.

Causal-LM students see the request through their tokenizer's chat template. Tool definitions
and tool calls are written as text with one model-agnostic convention (many small models'
templates cannot render them, and SmolLM2's fails on `content: null`):
- the tools go into the system message as JSON, with an instruction;
- an assistant tool call is `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`;
- a tool result is a `tool` message whose content is the result text.
What a student is trained to write is exactly what `parse_assistant_text` reads back, so
tool calls survive the round trip intact (training never flattens them to empty content).
"""

from __future__ import annotations

import json
import re
from typing import Any

from services.domain.records import content_text

__all__ = ["answer_turn", "assistant_text", "content_text", "last_user_text", "parse_assistant_text", "prompt_text",
           "template_messages"]

TOOL_CALL_RE = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.DOTALL)
TOOLS_HEADER = (
    "You can call these functions. To call one, answer with "
    '<tool_call>{"name": <function name>, "arguments": <JSON object>}</tool_call> '
    "(one block per call) and nothing else.\nFunctions:\n"
)


def assistant_text(message: dict[str, Any]) -> str:
    """An assistant message (content and/or tool calls) as the text a student writes."""
    parts = [content_text(message.get("content"))]
    for call in message.get("tool_calls") or []:
        function = call.get("function", {})
        arguments = function.get("arguments", "{}")
        try:
            parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
        except ValueError:
            parsed = arguments  # kept verbatim: the evaluator counts it as wrong, not us
        parts.append("<tool_call>" + json.dumps({"name": function.get("name"), "arguments": parsed},
                                                ensure_ascii=False) + "</tool_call>")
    return "".join(p for p in parts if p)


def parse_assistant_text(text: str) -> dict[str, Any]:
    """Text a student wrote -> an OpenAI assistant message (`content`, and `tool_calls` if any)."""
    calls = []
    for index, match in enumerate(TOOL_CALL_RE.finditer(text)):
        try:
            body = json.loads(match.group(1))
        except ValueError:
            continue
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            continue
        arguments = body.get("arguments", {})
        calls.append({
            "id": f"call_{index}",
            "type": "function",
            "function": {"name": body["name"],
                         "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)},
        })
    if not calls:
        return {"role": "assistant", "content": text}
    rest = TOOL_CALL_RE.sub("", text).strip()
    return {"role": "assistant", "content": rest or None, "tool_calls": calls}


def template_messages(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> list[dict[str, str]]:
    """OpenAI messages (+ tools) -> plain {role, content} messages any chat template can render."""
    out: list[dict[str, str]] = []
    for message in messages:
        role = message.get("role", "user")
        if role == "developer":
            role = "system"
        text = assistant_text(message) if role == "assistant" else content_text(message.get("content"))
        out.append({"role": role, "content": text})
    if tools:
        spec = TOOLS_HEADER + "\n".join(json.dumps(t.get("function", t), ensure_ascii=False, sort_keys=True) for t in tools)
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": out[0]["content"] + "\n\n" + spec}
        else:
            out.insert(0, {"role": "system", "content": spec})
    return out


def prompt_text(tokenizer: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> str:
    """The prompt a causal-LM student continues: the request rendered by its chat template."""
    return str(tokenizer.apply_chat_template(template_messages(messages, tools), tokenize=False,
                                             add_generation_prompt=True))


def answer_turn(tokenizer: Any, messages: list[dict[str, Any]], answer: dict[str, Any],
                tools: list[dict[str, Any]] | None = None) -> str:
    """How the chat template writes `answer` after the prompt (end-of-turn included): the text a
    student is trained to produce and that label scoring measures."""
    prompt = prompt_text(tokenizer, messages, tools)
    full = str(tokenizer.apply_chat_template(template_messages([*messages, answer], tools), tokenize=False))
    if full.startswith(prompt):
        return full[len(prompt):]
    # A template that renders the last turn differently with add_generation_prompt: the answer
    # appended to the prompt, closed by the end-of-sequence token.
    return assistant_text(answer) + (tokenizer.eos_token or "")


def last_user_text(messages: list[dict[str, Any]]) -> str:
    """The last user turn: what an encoder student reads."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return content_text(message.get("content"))
    return ""
