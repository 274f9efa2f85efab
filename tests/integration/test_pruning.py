"""Token efficiency end to end on tiny real models: a workload whose teacher prompt is a long static
system prompt gets it recorded in the dataset manifest; the LoRA student trains and is evaluated
without it (a short task tag instead), answers label questions by label scoring, and the gateway
strips exactly the recorded prompt before calling it while any other prompt goes to the teacher."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from openai import OpenAI

from services.customizer.service import train_candidate
from services.deployment.backends.local import LocalBackend
from services.deployment.gateway.app import create_gateway
from services.deployment.rollout import deploy
from services.deployment.routes import RouteStore
from services.deployment.traffic_log import TrafficLogger
from services.domain.evaluation import EvalKind
from services.domain.queue import make_celery_app
from services.domain.settings import Settings
from services.evaluator.runner import evaluate
from tests.factories import promotion_decision
from tests.gateway.fake_teacher import behind_teacher, fake_teacher
from tests.model_plane import classification_logs, model_plane
from tests.servers import serve

LONG_SYSTEM = ("Classify the finance headline into exactly one topic. " + " ".join(
    f"{label}: headlines about {label.lower()}, for example '{label} news {i}'." for i in range(6)
    for label in ("Markets", "Macro", "Earnings", "Dividend")) + " Answer with the label in triple brackets.")


def long_prompt_logs(n: int) -> list[dict[str, Any]]:
    logs = classification_logs(n)
    for record in logs:
        record["request"]["messages"][0]["content"] = LONG_SYSTEM
    return logs


class Recording:
    """The real local backend, remembering what the student was sent."""

    def __init__(self, inner: LocalBackend) -> None:
        self.inner, self.bodies = inner, []

    def chat(self, route: Any, body: dict[str, Any]) -> dict[str, Any]:
        self.bodies.append(body)
        return self.inner.chat(route, body)


def test_a_pruned_student_trains_evaluates_and_serves_without_the_static_prompt(tmp_path: Path) -> None:
    plane = model_plane(tmp_path, records=120, logs=long_prompt_logs(120), max_steps=4, max_seq_length=512)
    static = plane.dataset.manifest["static_prompt"]
    assert static["system"] == LONG_SYSTEM and static["share"] == 1.0 and static["tokens"] == len(LONG_SYSTEM) // 4

    pruned = train_candidate(plane.settings, "tiny-lora", plane.dataset.dataset_id)  # prune_static_prompt: auto
    assert pruned.prompt_tag == "task: news_topic" and pruned.static_prompt["sha256"] == static["sha256"]
    metrics = pruned.metrics
    assert metrics["pruned"] and metrics["prompt_tokens_pruned_mean"] * 5 < metrics["prompt_tokens_unpruned_mean"]
    assert pruned.labels == ["Dividend", "Earnings", "Macro", "Markets"] and pruned.answer_template == "[[[{label}]]]"

    whole_settings = Settings.model_validate({**plane.settings.model_dump(), "candidates": [
        {**c.model_dump(), "prune_static_prompt": "off"} if c.name == "tiny-lora" else c.model_dump()
        for c in plane.settings.candidates]})
    whole = train_candidate(whole_settings, "tiny-lora", plane.dataset.dataset_id)
    assert whole.artifact_id != pruned.artifact_id and whole.prompt_tag is None and whole.static_prompt is None
    assert whole.metrics["mean_input_tokens"] > 5 * metrics["mean_input_tokens"], "same data, far fewer tokens"

    result = evaluate(plane.settings, candidate="tiny-lora", dataset_id=plane.dataset.dataset_id,
                      kind=EvalKind.CUSTOMIZED, artifact=pruned)
    assert result.n == plane.dataset.splits["eval"]["count"] and result.score is not None
    tokens = result.metrics["prompt_tokens"]
    assert tokens["pruned_requests"] == result.n and tokens["evaluated_mean"] * 5 < tokens["full_mean"], \
        "evaluated as served: without the static prompt"

    with serve(fake_teacher()) as teacher_url:
        settings = behind_teacher(plane.settings, teacher_url, tmp_path, promotion={"monitor_share": 0.0})
        routes = RouteStore(settings.job_store.url)
        route = deploy(Path(settings.artifacts.root), routes, promotion_decision("tiny-lora", pruned.artifact_id),
                       job_id=None)
        assert route.prompt_tag == pruned.prompt_tag and route.labels == pruned.labels
        backend = Recording(LocalBackend(settings))
        logger = TrafficLogger(make_celery_app(settings.queue, name="t"), settings.gateway.spool_path)
        with serve(create_gateway(settings, logger=logger, backend=backend)) as gateway_url:
            client = OpenAI(base_url=f"{gateway_url}/v1", api_key="unused", max_retries=0)
            raw = client.chat.completions.with_raw_response.create(model="news_topic", max_tokens=200, messages=[
                {"role": "system", "content": LONG_SYSTEM}, {"role": "user", "content": "Acme profit beats"}])
            assert raw.headers["x-flywheel-served-by"] == "student"
            assert raw.parse().choices[0].message.content in {f"[[[{label}]]]" for label in pruned.labels}, \
                "a label answer is one of the labels, by scoring, not free generation up to max_tokens"
            assert backend.bodies[-1]["messages"] == [{"role": "system", "content": "task: news_topic"},
                                                      {"role": "user", "content": "Acme profit beats"}]
            changed = client.chat.completions.with_raw_response.create(model="news_topic", messages=[
                {"role": "system", "content": LONG_SYSTEM.replace("Dividend", "Dividends")},
                {"role": "user", "content": "Acme profit beats"}])
            assert changed.headers["x-flywheel-served-by"] == "teacher" and len(backend.bodies) == 1, \
                "a changed teacher prompt never reaches a student trained on the old one"
    assert logger._queue.qsize() == 1, "the teacher's answer to the changed prompt is logged for the next dataset"
