"""Cascade: a classification student answers only when it is confident enough; the teacher answers the rest.

The threshold is calibrated on the eval set at deploy time: the lowest confidence at which the
student's answers, among those at or above it, still agree with the teacher's at least
`target_agreement` of the time — so the student takes as much traffic as that agreement allows.
The calibration reports the share the student would serve and the agreement it buys.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Calibration:
    threshold: float | None  # None: no threshold reaches the target; the teacher answers everything
    student_share: float
    agreement: float | None
    n: int

    def to_json(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "student_share": round(self.student_share, 4),
                "agreement": None if self.agreement is None else round(self.agreement, 4), "n": self.n}


def calibrate(confidences: Sequence[float], agrees: Sequence[bool], target_agreement: float) -> Calibration:
    pairs = sorted(zip(confidences, agrees, strict=True), key=lambda p: -p[0])
    best = Calibration(None, 0.0, None, len(pairs))
    agreed = 0
    for i, (confidence, ok) in enumerate(pairs):
        agreed += ok
        # Only cut between distinct confidences: a threshold admits every answer at or above it.
        if i + 1 < len(pairs) and pairs[i + 1][0] == confidence:
            continue
        share = agreed / (i + 1)
        if share >= target_agreement:
            best = Calibration(confidence, (i + 1) / len(pairs), share, len(pairs))
    return best


def calibrate_classifier(artifact_path: str, dataset: Any, label_pattern: str, target_agreement: float) -> Calibration:
    """Run the classifier student over the eval split and calibrate against the teacher's labels."""
    from services.domain.labels import LabelParser
    from services.domain.records import content_text
    from services.models.runtime.classifier import ClassifierRunner

    runner = ClassifierRunner(Path(artifact_path) / "model")
    parser = LabelParser(label_pattern)
    records = list(dataset.read_split("eval"))
    answers = runner.answer([{"messages": r["request"]["messages"]} for r in records])
    teacher = [parser.parse(content_text(r["response"]["choices"][0]["message"].get("content"))) for r in records]
    return calibrate([c for _, c in answers], [parser.parse(a) == t for (a, _), t in zip(answers, teacher, strict=True)],
                     target_agreement)
