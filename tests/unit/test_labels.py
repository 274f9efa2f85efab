"""Label templates: a student answers in exactly the teacher's format."""

from __future__ import annotations

import pytest

from services.domain.labels import LabelParser, render_label


@pytest.mark.parametrize(
    ("answer", "template"),
    [
        ("[[[Earnings]]]", "[[[{label}]]]"),
        ("Topic: [[[ Stock Commentary ]]] {ok}", "Topic: [[[ {label} ]]] {{ok}}"),
        ("[[Macro]]", "[[{label}]]"),
        ("no label here", None),
    ],
)
def test_template_from_answer(answer: str, template: str | None) -> None:
    assert LabelParser().template_from(answer) == template


def test_rendered_label_parses_back() -> None:
    parser = LabelParser(labels=["Stock Commentary", "Macro"])
    template = parser.template_from("Answer: [[[Macro]]]")
    assert template is not None
    rendered = render_label(template, "Stock Commentary")
    assert rendered == "Answer: [[[Stock Commentary]]]"
    assert parser.parse(rendered) == "Stock Commentary"
