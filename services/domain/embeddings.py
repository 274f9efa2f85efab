"""Embedding logs: teacher vectors as logged (floats, or base64 of little-endian float32), and input roles.

A text's role is `query` or `passage`: the client's `input_type` as logged (`request.input_type`,
sent through the `openai` client's `extra_body`). Without it: a list of exactly two texts is a
[query, passage] pair, a single text of at most `query_max_words` words is a query, and anything
else (batches, long texts) is passages.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Sequence
from typing import Any


def decode_embedding(value: Any) -> list[float]:
    """A logged embedding as floats; raises ValueError on anything else."""
    if isinstance(value, str):
        raw = base64.b64decode(value, validate=True)
        if len(raw) % 4:
            raise ValueError(f"base64 embedding of {len(raw)} bytes is not a float32 array")
        return list(struct.unpack(f"<{len(raw) // 4}f", raw))
    if isinstance(value, list) and all(isinstance(x, int | float) and not isinstance(x, bool) for x in value):
        return [float(x) for x in value]
    raise ValueError(f"an embedding must be a list of numbers or a base64 string, not {type(value).__name__}")


QUERY_MAX_WORDS = 32


def input_roles(request: dict[str, Any], texts: Sequence[str], *, query_max_words: int = QUERY_MAX_WORDS) -> list[str]:
    """`query` or `passage` for each input text: the logged `input_type`, else the documented rule."""
    declared = request.get("input_type")
    if declared in ("query", "passage"):
        return [declared] * len(texts)
    if len(texts) == 2 and isinstance(request.get("input"), list):
        return ["query", "passage"]
    if len(texts) == 1 and len(texts[0].split()) <= query_max_words:
        return ["query"]
    return ["passage"] * len(texts)
