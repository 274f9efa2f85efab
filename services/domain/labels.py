"""Parse a classification label out of a teacher (or student) answer; render a label back.

Shared by the datastore (building datasets), the evaluator (scoring student answers) and the
serving side (answering in the teacher's format), so it lives in the domain.
The default pattern is `[[[label]]]`, case-insensitive and whitespace-tolerant; `[[label]]` is
accepted too. Spellings are normalized to the label set; unknown labels are never guessed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from services.domain.settings import DEFAULT_LABEL_PATTERN

_DOUBLE_BRACKETS = r"\[\[\s*(.+?)\s*\]\]"


def _canonical(label: str) -> str:
    return re.sub(r"\s+", " ", label.casefold()).strip()


class LabelParser:
    """Parse labels with the configured pattern; map spellings onto the known label set."""

    def __init__(self, pattern: str = DEFAULT_LABEL_PATTERN, labels: Sequence[str] | None = None) -> None:
        self.patterns = [re.compile(pattern, re.IGNORECASE | re.DOTALL)]
        if pattern == DEFAULT_LABEL_PATTERN:
            self.patterns.append(re.compile(_DOUBLE_BRACKETS, re.IGNORECASE | re.DOTALL))
        self.labels = {_canonical(label): label for label in labels or []}

    def parse(self, answer: str) -> str | None:
        for pattern in self.patterns:
            match = pattern.search(answer)
            if match and match.group(1).strip():
                raw = re.sub(r"\s+", " ", match.group(1)).strip()
                if not self.labels:
                    return raw
                return self.labels.get(_canonical(raw))  # unknown label: not guessed
        return None

    def template_from(self, answer: str) -> str | None:
        """The answer with its label replaced by `{label}` (how the teacher formats labels), if it parses."""
        for pattern in self.patterns:
            match = pattern.search(answer)
            if match and match.group(1).strip():
                start, end = match.span(1)
                return _escape(answer[:start]) + "{label}" + _escape(answer[end:])
        return None

    def first_template(self, answers: Iterable[str]) -> str | None:
        """The template of the first answer that parses (how the teacher formats labels), or None."""
        return next((t for answer in answers if (t := self.template_from(answer)) is not None), None)


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def render_label(template: str, label: str) -> str:
    """A label in the teacher's answer format, e.g. `[[[{label}]]]` -> `[[[Earnings]]]`."""
    return template.format(label=label)
