"""How a served causal-LM student answers a chat request (the `local` serving backend)."""

from __future__ import annotations

from typing import Any

from services.domain.labels import render_label
from services.models.students.kind import ChatRoute


def chat(runner: Any, route: ChatRoute, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A label answer by scoring the route's labels, else generation up to `max_tokens`."""
    if route.labels and route.answer_template:
        from services.models.students.causal_lm_lora.runtime import label_confidence

        # A label answer: score the labels (one forward pass over the prompt, then each label's tokens),
        # never free generation up to max_tokens.
        answers = [render_label(route.answer_template, label) for label in route.labels]
        best, scores = runner.score_labels(body["messages"], answers)
        return answers[best], {"decoding": "constrained", "confidence": round(label_confidence(scores, best), 6)}
    request = {"messages": body["messages"], "tools": body.get("tools")}
    return str(runner.generate([request], max_new_tokens=int(body.get("max_tokens") or 64))[0]), {}
