"""PII redaction: the first dataset stage, so nothing personal reaches a dataset or a student.

Built-in kinds: email, phone, payment_card (Luhn-checked), iban (mod-97 checked), us_ssn; plus
user patterns from config. Each match becomes `[REDACTED:<KIND>]`. Checksums keep false
positives down: a 16-digit order number that fails Luhn is left alone, and financial text is
full of long numbers.
"""

from __future__ import annotations

import functools
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from services.domain.records import LogRecord

Validator = Callable[[str], bool]
# Fields of a Responses API call that name things rather than hold text (left as they are).
_NOT_TEXT = frozenset({"id", "call_id", "item_id", "type", "role", "status", "model", "object", "name",
                       "previous_response_id", "tool_choice"})


def luhn_ok(candidate: str) -> bool:
    digits = [int(c) for c in candidate if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, digit in enumerate(reversed(digits)):
        if i % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def iban_ok(candidate: str) -> bool:
    compact = re.sub(r"\s+", "", candidate).upper()
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(c, 36)) for c in rearranged)
    return int(number) % 97 == 1


def ssn_ok(candidate: str) -> bool:
    area, group, serial = candidate.split("-")
    return area not in {"000", "666"} and not area.startswith("9") and group != "00" and serial != "0000"


@dataclass(frozen=True)
class PiiKind:
    name: str
    pattern: re.Pattern[str]
    validator: Validator | None = None


BUILTIN_KINDS: tuple[PiiKind, ...] = (
    PiiKind("email", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")),
    PiiKind("iban", re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?\b"), iban_ok),
    PiiKind("payment_card", re.compile(r"\b(?:\d[ -]?){12,18}\d\b"), luhn_ok),
    PiiKind("us_ssn", re.compile(r"\b\d{3}-\d{2}-\d{4}\b"), ssn_ok),
    # Phone numbers need a phone-like shape: a +country code, a (area code), NANP 555-123-4567, or
    # a trunk-prefix 0 (020 7946 0958). Bare or space-grouped digit runs are amounts, ids, card or
    # account numbers in financial text, and are left to the checksummed kinds above.
    PiiKind(
        "phone",
        re.compile(
            r"(?<![\w+])(?:\+\d{1,3}[ .-]?\(?\d{1,4}\)?(?:[ .-]?\d{2,4}){2,4}"
            r"|\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}"
            r"|\d{3}[.-]\d{3}[.-]\d{4}"
            r"|0\d{2,4}[ .-]\d{3,4}[ .-]\d{3,4})\b"
        ),
    ),
)



@dataclass
class RedactionReport:
    counts: Counter[str] = field(default_factory=Counter)
    records_changed: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"records_changed": self.records_changed, "counts": dict(sorted(self.counts.items()))}


class Redactor:
    """Applies the built-in kinds (in order: most specific first) and user patterns to text."""

    def __init__(self, extra_patterns: dict[str, str] | None = None, *, kinds: Iterable[PiiKind] = BUILTIN_KINDS):
        self.kinds = list(kinds) + [PiiKind(name, re.compile(p)) for name, p in (extra_patterns or {}).items()]
        self._cache: dict[str, tuple[str, Counter[str]]] = {}

    def text(self, value: str, counts: Counter[str]) -> str:
        # Teacher prompts repeat (the same long system prompt on every call): remember results.
        cached = self._cache.get(value)
        if cached is None:
            found: Counter[str] = Counter()
            result = value
            for kind in self.kinds:
                result = kind.pattern.sub(functools.partial(self._replace, kind=kind, counts=found), result)
            cached = (result, found)
            if len(value) >= 200 and len(self._cache) < 10_000:
                self._cache[value] = cached
        counts.update(cached[1])
        return cached[0]

    @staticmethod
    def _replace(match: re.Match[str], kind: PiiKind, counts: Counter[str]) -> str:
        if kind.validator is not None and not kind.validator(match.group(0)):
            return match.group(0)
        counts[kind.name] += 1
        return f"[REDACTED:{kind.name.upper()}]"

    def record(self, record: LogRecord, report: RedactionReport) -> LogRecord:
        """A copy of the record with PII redacted in every text the student could learn from."""
        before = sum(report.counts.values())
        data = record.model_dump(mode="json", exclude_unset=True, by_alias=True)
        request, response = data["request"], data["response"]
        for message in request.get("messages", []):
            self._message(message, report.counts)
        for choice in response.get("choices", []):
            self._message(choice.get("message") or {}, report.counts)
        if isinstance(request.get("input"), str):
            request["input"] = self.text(request["input"], report.counts)
        elif isinstance(request.get("input"), list):
            request["input"] = [self.text(x, report.counts) if isinstance(x, str) else x for x in request["input"]]
        if data.get("responses_api"):  # the call as made repeats every text of its chat view
            data["responses_api"] = self._walk(data["responses_api"], report.counts)
        if sum(report.counts.values()) == before:
            return record
        report.records_changed += 1
        return LogRecord.model_validate(data)

    def _message(self, message: dict[str, Any], counts: Counter[str]) -> None:
        content = message.get("content")
        if isinstance(content, str):
            message["content"] = self.text(content, counts)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    part["text"] = self.text(part["text"], counts)
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            if isinstance(function.get("arguments"), str):
                function["arguments"] = self._arguments(function["arguments"], counts)

    def _walk(self, value: Any, counts: Counter[str], key: str = "") -> Any:
        """Every text in a Responses API body or response object, redacted (ids, types and names are kept)."""
        if isinstance(value, str):
            if key in _NOT_TEXT:
                return value
            if key == "arguments":
                try:
                    return self._arguments(value, counts)
                except ValueError:
                    return self.text(value, counts)
            return self.text(value, counts)
        if isinstance(value, list):
            return [self._walk(v, counts, key) for v in value]
        if isinstance(value, dict):
            return {k: self._walk(v, counts, k) for k, v in value.items()}
        return value

    def _arguments(self, arguments: str, counts: Counter[str]) -> str:
        # Redact inside the decoded values so the arguments stay valid JSON.
        def walk(value: Any) -> Any:
            if isinstance(value, str):
                return self.text(value, counts)
            if isinstance(value, list):
                return [walk(v) for v in value]
            if isinstance(value, dict):
                return {k: walk(v) for k, v in value.items()}
            return value

        return json.dumps(walk(json.loads(arguments)), ensure_ascii=False)


def redact_records(
    records: Iterable[LogRecord], *, extra_patterns: dict[str, str] | None = None
) -> tuple[Iterator[LogRecord], RedactionReport]:
    """Redact records lazily; the report fills in (counts per kind) as the stream is consumed."""
    redactor = Redactor(extra_patterns)
    report = RedactionReport()
    return (redactor.record(r, report) for r in records), report
