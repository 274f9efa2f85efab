"""Turn one raw log line into a LogRecord or a quarantine reason. Never raises on any bytes."""

from __future__ import annotations

import json
from dataclasses import dataclass

from pydantic import ValidationError

from services.domain.records import LogRecord, QuarantineReason, reason_for

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: QuarantineReason
    detail: str


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


# One decoder for all lines: json.loads(parse_constant=...) would build a new one per call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def parse_line(raw: bytes) -> LogRecord | Rejected:
    """Validate one line (without its newline). Size limits are the reader's job."""
    if raw.startswith(_BOM):
        raw = raw[len(_BOM) :]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejected(QuarantineReason.NOT_UTF8, f"byte {exc.start} is not UTF-8 ({exc.reason})")
    try:
        value = _DECODER.decode(text)
    except (ValueError, RecursionError) as exc:
        return Rejected(QuarantineReason.INVALID_JSON, _short(str(exc) or type(exc).__name__))
    if not isinstance(value, dict):
        return Rejected(
            QuarantineReason.NOT_AN_OBJECT, f"the line is a JSON {type(value).__name__}, not an object"
        )
    try:
        record = LogRecord.from_json_object(value)
    except ValidationError as exc:
        reason, detail = reason_for(exc)
        return Rejected(reason, _short(detail))
    except RecursionError:
        return Rejected(QuarantineReason.INVALID_VALUE, "the record is nested too deeply")
    try:
        record.id  # noqa: B018 - computing the id encodes every string as UTF-8
    except UnicodeEncodeError:
        return Rejected(QuarantineReason.INVALID_VALUE, "a string holds a lone UTF-16 surrogate escape")
    except (RecursionError, ValueError) as exc:
        return Rejected(QuarantineReason.INVALID_VALUE, _short(f"record cannot be serialized: {exc}"))
    return record


def _short(text: str, limit: int = 500) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
