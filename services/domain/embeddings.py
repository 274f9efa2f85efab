"""Teacher vectors as logged: a list of floats, or base64 of little-endian float32 (encoding_format=base64)."""

from __future__ import annotations

import base64
import struct
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

