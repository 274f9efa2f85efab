"""Who answers a request, and whether two answers agree: decisions over a workload's route, with no
HTTP and no I/O (randomness comes in as a `random.Random`), so each one is tested on its own
(tests/unit/gateway/test_routing.py). The serving classes act on what these return.

Phases (services/deployment/routes.py): `teacher`; `shadow` (the teacher answers, the student answers in
the background for comparison); `canary` (the student is asked for `canary_percent` % of requests);
`full` (the student is asked for every request). A student that is asked may still hand the request to
the teacher: it failed, or its confidence is under a selective route's threshold (`fallback`).
"""

from __future__ import annotations

import random
from typing import Any, Literal

from services.deployment.routes import Route
from services.domain.labels import LabelParser
from services.domain.prompts import StaticPrompt, strip_static
from services.domain.records import content_text
from services.domain.settings import WorkloadSettings
from services.models.students.registry import kind_spec

Endpoint = Literal["chat", "embeddings", "responses"]
Fallback = Literal["student_failed", "not_confident"]


def serves(route: Route, endpoint: Endpoint) -> bool:
    """The route names a student whose kind answers this endpoint (the kind registry says which; a chat
    student answers the Responses API through its chat view)."""
    if route.candidate is None or route.student_kind is None:
        return False
    try:
        return kind_spec(route.student_kind).serves == ("chat" if endpoint == "responses" else endpoint)
    except ValueError:  # a kind this build does not know: the teacher answers
        return False


def canary_draw(route: Route, rng: random.Random) -> bool:
    """This request falls in the canary's share (`canary_percent` of 100)."""
    return rng.uniform(0, 100) < route.canary_percent


def student_first(route: Route, endpoint: Endpoint, rng: random.Random) -> bool:
    """The student is asked before the teacher: phase `full`, or `canary` and this request drawn (one draw)."""
    if not serves(route, endpoint):
        return False
    return route.phase == "full" or (route.phase == "canary" and canary_draw(route, rng))


def shadows(route: Route, endpoint: Endpoint) -> bool:
    """After the teacher answers, the student answers in the background for comparison (phase `shadow`)."""
    return route.phase == "shadow" and serves(route, endpoint)


def stands_in(route: Route, endpoint: Endpoint) -> bool:
    """The route's student may answer when the teacher cannot (timeout, unreachable, 429/5xx after retries):
    it serves this endpoint and has been deployed (shadow, canary or full). It answers whatever its
    confidence: a selective route's threshold chooses between two answers, and here there is one."""
    return route.phase in ("shadow", "canary", "full") and serves(route, endpoint)


def monitor_draw(monitor_share: float, rng: random.Random) -> bool:
    """The teacher also answers this student-served request, in the background (canary/full monitoring)."""
    return rng.random() < monitor_share


def confident(route: Route, answer: dict[str, Any]) -> bool:
    """A selective route lets the student answer only at or above the threshold its decision chose;
    other routes always let it answer."""
    if not route.cascade:
        return True
    threshold = route.cascade.get("threshold")
    confidence = (answer["choices"][0].get("flywheel") or {}).get("confidence")
    return threshold is not None and confidence is not None and confidence >= threshold


def fallback(route: Route, answer: dict[str, Any] | None) -> Fallback | None:
    """Why the teacher answers a request the student was asked, or None when the student's answer stands."""
    if answer is None:
        return "student_failed"
    return None if confident(route, answer) else "not_confident"


def student_body(route: Route, body: dict[str, Any], static: StaticPrompt | None) -> dict[str, Any] | None:
    """The request as the route's student learned it, or None when its prompt is not the one the student
    was trained on (a changed teacher prompt must never silently reach a student trained on the old one).
    `static` is the route's static prompt (`StaticPrompts.of`). Pruned students (a `prompt_tag`) get the
    static part replaced by their tag; others get the request unchanged."""
    if static is None:
        return body
    stripped = strip_static(body["messages"], static, route.prompt_tag or "")
    if stripped is None:
        return None
    return {**body, "messages": stripped} if route.prompt_tag else body


class StaticPrompts:
    """Each route's static prompt, parsed once (by its sha256) rather than per request."""

    def __init__(self) -> None:
        self._by_sha: dict[str, StaticPrompt] = {}

    def of(self, route: Route) -> StaticPrompt | None:
        if not route.static_prompt:
            return None
        sha = route.static_prompt["sha256"]
        static = self._by_sha.get(sha)
        if static is None:
            static = self._by_sha[sha] = StaticPrompt.model_validate(route.static_prompt)
        return static


def label_parser(workload: WorkloadSettings) -> LabelParser | None:
    """How answers of this workload are compared: by label (classification, or not yet detected), else None."""
    return LabelParser(workload.label_pattern) if workload.type in ("classification", "auto") else None


def agree(student: dict[str, Any], teacher: dict[str, Any], parser: LabelParser | None) -> bool:
    """Whether two chat completions agree: the same label when `parser` finds one in the teacher's
    answer, else the same text up to whitespace."""
    texts = [content_text(((a.get("choices") or [{}])[0].get("message") or {}).get("content")) for a in (student, teacher)]
    if parser is not None:
        labels = [parser.parse(t) for t in texts]
        if labels[1] is not None:
            return labels[0] == labels[1]
    return " ".join(texts[0].split()) == " ".join(texts[1].split())
