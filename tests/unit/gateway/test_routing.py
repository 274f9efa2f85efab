"""Who answers, decided without HTTP: each decision of services/deployment/gateway/routing.py on a route."""

from __future__ import annotations

import random
from typing import Any

import pytest

from services.deployment.gateway import routing
from services.deployment.routes import Route
from services.domain.prompts import static_sha
from services.domain.settings import WorkloadSettings

SYSTEM = "Classify the headline into one topic. Answer as [[[topic]]]."


def route(phase: str = "full", kind: str | None = "encoder_classifier", **fields: Any) -> Route:
    return Route.model_validate({"workload_id": "news", "phase": phase, "candidate": "clf" if kind else None,
                                 "student_kind": kind, **fields})


def answer(content: str | None, confidence: float | None = None) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": content}}
    if confidence is not None:
        choice["flywheel"] = {"confidence": confidence}
    return {"choices": [choice]}


class CountingRandom(random.Random):
    """Counts draws: one request takes at most one."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value, self.draws = value, 0

    def random(self) -> float:
        self.draws += 1
        return self.value


@pytest.mark.parametrize(("kind", "endpoint", "expected"), [
    ("encoder_classifier", "chat", True), ("causal_lm_lora", "chat", True), ("embedding_distill", "chat", False),
    ("embedding_distill", "embeddings", True), ("encoder_classifier", "embeddings", False),
    ("no_such_kind", "chat", False), (None, "chat", False)])
def test_the_kind_registry_says_which_endpoint_a_student_serves(kind: str | None, endpoint: routing.Endpoint,
                                                                 expected: bool) -> None:
    assert routing.serves(route(kind=kind), endpoint) is expected


def test_a_route_without_a_candidate_serves_nothing() -> None:
    assert not routing.serves(route().model_copy(update={"candidate": None}), "chat")


@pytest.mark.parametrize(("phase", "asked"), [("teacher", False), ("shadow", False), ("full", True)])
def test_the_phase_says_whether_the_student_is_asked_first(phase: str, asked: bool) -> None:
    rng = CountingRandom(0.0)
    assert routing.student_first(route(phase), "chat", rng) is asked
    assert rng.draws == 0, "no draw outside canary"


def test_the_canary_draw_takes_its_share_with_one_draw_per_request() -> None:
    canary = route("canary", canary_percent=30)
    rng = random.Random(7)
    drawn = sum(routing.student_first(canary, "chat", rng) for _ in range(2000))
    assert 0.25 < drawn / 2000 < 0.35
    assert routing.student_first(canary, "chat", CountingRandom(0.29)), "0.29 * 100 < 30"
    assert not routing.student_first(canary, "chat", CountingRandom(0.30))
    counting = CountingRandom(0.0)
    routing.student_first(canary, "embeddings", counting)
    assert counting.draws == 0, "a student that does not serve the endpoint is not drawn for"
    routing.student_first(canary, "chat", counting)
    assert counting.draws == 1
    assert not any(routing.student_first(route("canary", canary_percent=0), "chat", rng) for _ in range(200))
    assert all(routing.student_first(route("canary", canary_percent=100), "chat", rng) for _ in range(200))


def test_the_same_canary_draw_serves_embedding_students() -> None:
    canary = route("canary", kind="embedding_distill", canary_percent=50)
    assert routing.student_first(canary, "embeddings", CountingRandom(0.49))
    assert not routing.student_first(canary, "embeddings", CountingRandom(0.5))


def test_only_shadow_routes_of_the_endpoint_shadow() -> None:
    assert routing.shadows(route("shadow"), "chat")
    assert not routing.shadows(route("shadow", kind="embedding_distill"), "chat")
    assert not routing.shadows(route("canary"), "chat") and not routing.shadows(route("shadow", kind=None), "chat")


@pytest.mark.parametrize(("phase", "stands_in"), [("teacher", False), ("shadow", True), ("canary", True),
                                                  ("full", True)])
def test_a_deployed_student_stands_in_for_a_failing_teacher(phase: str, stands_in: bool) -> None:
    assert routing.stands_in(route(phase), "chat") is stands_in
    assert not routing.stands_in(route(phase, kind="embedding_distill"), "chat"), "only for what its kind serves"
    assert routing.stands_in(route(phase, kind="embedding_distill"), "embeddings") is stands_in
    assert not routing.stands_in(route(phase, kind=None), "chat")


def test_the_monitor_sample_is_its_share() -> None:
    assert not routing.monitor_draw(0.0, CountingRandom(0.0))
    assert routing.monitor_draw(1.0, CountingRandom(0.999))
    assert routing.monitor_draw(0.25, CountingRandom(0.2)) and not routing.monitor_draw(0.25, CountingRandom(0.25))


def test_a_selective_route_lets_the_student_answer_only_at_or_above_its_threshold() -> None:
    selective = route(cascade={"threshold": 0.8})
    assert routing.confident(selective, answer("[[[Macro]]]", 0.8))
    assert not routing.confident(selective, answer("[[[Macro]]]", 0.79))
    assert not routing.confident(selective, answer("[[[Macro]]]")), "no confidence: not sure enough"
    assert not routing.confident(route(cascade={"n": 10}), answer("[[[Macro]]]", 1.0)), "no threshold: never sure"
    assert routing.confident(route(), answer("[[[Macro]]]")), "a route that is not selective always lets it answer"


def test_fallback_says_why_the_teacher_answers_instead() -> None:
    selective = route(cascade={"threshold": 0.8})
    assert routing.fallback(selective, None) == "student_failed"
    assert routing.fallback(selective, answer("x", 0.5)) == "not_confident"
    assert routing.fallback(selective, answer("x", 0.9)) is None
    assert routing.fallback(route(), answer("x")) is None


def test_only_the_prompt_a_student_learned_reaches_it() -> None:
    static = {"system": SYSTEM, "user_prefix": "", "sha256": static_sha(SYSTEM, ""), "share": 1.0, "records": 10,
              "tokens": 12, "variable_tokens_mean": 4.0}
    body = {"model": "news", "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Fed holds"}]}
    prompts = routing.StaticPrompts()

    plain = route()
    assert routing.student_body(plain, body, prompts.of(plain)) is body, "no recorded prompt: the request as sent"

    whole = route(static_prompt=static)
    assert routing.student_body(whole, body, prompts.of(whole)) is body, "trained on the whole prompt: unchanged"
    assert prompts.of(whole) is prompts.of(whole), "parsed once"

    pruned = route(static_prompt=static, prompt_tag="task: news")
    stripped = routing.student_body(pruned, body, prompts.of(pruned))
    assert stripped is not None and stripped["messages"] == [{"role": "system", "content": "task: news"},
                                                             {"role": "user", "content": "Fed holds"}]
    assert body["messages"][0]["content"] == SYSTEM, "the client's body is not changed"

    changed = {**body, "messages": [{"role": "system", "content": SYSTEM + " Also rate sentiment."},
                                    body["messages"][1]]}
    assert routing.student_body(pruned, changed, prompts.of(pruned)) is None
    assert routing.student_body(whole, changed, prompts.of(whole)) is None


def test_answers_agree_by_label_for_classification_and_by_text_otherwise() -> None:
    parser = routing.label_parser(WorkloadSettings(type="classification"))
    assert parser is not None and routing.label_parser(WorkloadSettings(type="auto")) is not None
    assert routing.label_parser(WorkloadSettings(type="chat")) is None
    assert routing.agree(answer("[[[Macro]]]"), answer("It is [[[ macro ]]] news"), parser) is False, \
        "labels are compared as parsed (the parser has no label set to normalise case)"
    assert routing.agree(answer("Topic: [[[Macro]]]"), answer("[[[Macro]]]"), parser)
    assert not routing.agree(answer("[[[Earnings]]]"), answer("[[[Macro]]]"), parser)
    assert routing.agree(answer("no  label\nhere"), answer("no label here"), parser), "no teacher label: by text"
    assert not routing.agree(answer("[[[Macro]]]"), answer("[[[Macro]]] indeed"), None)
    assert routing.agree(answer(" same   words "), answer("same words"), None)
    assert not routing.agree({"choices": []}, answer("something"), None)
