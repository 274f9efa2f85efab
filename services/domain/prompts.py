"""Static prompt parts: the system prompt (and fixed prefix of the first user turn) that a teacher is
sent with every request of a workload. A fine-tuned student has learned the task and does not
need them, so pruning them is the biggest speed lever left (issue #8; OpenPipe's "pruning rules").

One definition serves every part: the datastore detects the static part and records it in the
dataset manifest; the customizer trains a pruned student on `strip`ped records; the evaluator
evaluates it the same way; the gateway strips exactly the recorded part before calling the student
and sends any request whose prompt does not match to the teacher. A record matches only if its
system prompt is exactly the recorded one and its first user turn starts with the recorded prefix.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import BaseModel, Field

from services.domain.records import content_text

MIN_USER_PREFIX_CHARS = 16  # a shorter shared start of the user turn is a coincidence, not a template


class StaticPrompt(BaseModel):
    """The static part of a workload's prompts, as recorded in a dataset manifest."""

    system: str = Field(description="The shared system prompt, exactly.")
    user_prefix: str = Field("", description="A fixed prefix of the first user turn shared by those records.")
    sha256: str = Field(description="Identity of (system, user_prefix): what a pruned student was trained without.")
    share: float = Field(ge=0, le=1, description="Share of the scanned records that carry it.")
    records: int = Field(ge=0, description="Records scanned.")
    tokens: int = Field(ge=0, description="Tokens of the static part (token_counter).")
    variable_tokens_mean: float = Field(ge=0, description="Mean tokens of what is left of a matching request.")
    token_counter: str = "approx_chars_div_4"

    @property
    def ratio(self) -> float:
        """Static tokens per variable token: how much pruning saves."""
        return self.tokens / max(self.variable_tokens_mean, 1.0)


def static_sha(system: str, user_prefix: str) -> str:
    return hashlib.sha256(f"{system}\x00{user_prefix}".encode()).hexdigest()


def _system_and_user(messages: list[dict[str, Any]]) -> tuple[str | None, int | None]:
    """(system text, index of the first user turn) when the request opens with a system message."""
    if not messages or messages[0].get("role") != "system":
        return None, None
    user = next((i for i, m in enumerate(messages) if m.get("role") == "user"), None)
    return content_text(messages[0].get("content")), user


def detect_static_prompt(
    requests: Iterable[list[dict[str, Any]]], *, min_share: float = 0.8,
    count_tokens: Callable[[str], int] | None = None, token_counter: str = "approx_chars_div_4",
) -> StaticPrompt | None:
    """The system prompt shared by at least `min_share` of the requests, with the longest prefix of the
    first user turn that every request carrying it shares (cut back to a word boundary); None when no
    system prompt is that common."""
    count = count_tokens or (lambda text: max(1, len(text) // 4))
    scanned, systems, texts_of = 0, Counter[str](), dict[str, str]()
    all_requests: list[tuple[str, str | None]] = []  # (system, first user turn): small, not whole requests
    for messages in requests:
        scanned += 1
        system, user = _system_and_user(messages)
        if system is None:
            continue
        system = texts_of.setdefault(system, system)  # one copy of each system prompt, however many records
        systems[system] += 1
        all_requests.append((system, content_text(messages[user].get("content")) if user is not None else None))
    if not systems:
        return None
    system, carriers = systems.most_common(1)[0]
    share = carriers / max(scanned, 1)
    if share < min_share:
        return None
    texts = [text for sys_text, text in all_requests if sys_text is system and text is not None]
    prefix = os.path.commonprefix(texts) if len(texts) > 1 else ""
    if prefix and not all(len(t) == len(prefix) for t in texts):  # never swallow a whole user turn
        cut = max(prefix.rfind(" "), prefix.rfind("\n"))
        prefix = prefix[:cut + 1] if cut >= 0 else ""
    if len(prefix) < MIN_USER_PREFIX_CHARS or any(len(t) == len(prefix) for t in texts):
        prefix = ""
    variable = [count(t[len(prefix):]) for t in texts] or [0]
    return StaticPrompt(system=system, user_prefix=prefix, sha256=static_sha(system, prefix), share=round(share, 4),
                        records=scanned, tokens=count(system) + (count(prefix) if prefix else 0),
                        variable_tokens_mean=round(sum(variable) / len(variable), 2), token_counter=token_counter)


def task_tag(workload_id: str) -> str:
    """What stands in for the pruned system prompt: short, and keeps chat templates that insert a
    default system prompt of their own (SmolLM2's does) from adding one."""
    return f"task: {workload_id}"


def strip_static(messages: list[dict[str, Any]], static: StaticPrompt, tag: str) -> list[dict[str, Any]] | None:
    """The messages with the static part replaced by `tag`, or None when they do not carry exactly it."""
    system, user = _system_and_user(messages)
    if system != static.system:
        return None
    out = [{"role": "system", "content": tag}, *(dict(m) for m in messages[1:])]
    if static.user_prefix:
        if user is None:
            return None
        text = content_text(messages[user].get("content"))
        if not text.startswith(static.user_prefix):
            return None
        out[user] = {**out[user], "content": text[len(static.user_prefix):]}
    return out


def resolve_pruning(mode: str, static: StaticPrompt | None, *, min_ratio: float) -> bool:
    """Whether a student prunes: `on` whenever a static part was detected, `auto` when it is at least
    `min_ratio` times the variable part, `off` never."""
    if static is None or mode == "off":
        return False
    return mode == "on" or static.ratio >= min_ratio
