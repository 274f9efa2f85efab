"""Selective promotion end to end: a real evaluation and decision choose a confidence threshold, deploy
puts it on the route, the gateway answers with the student only at or above it (official `openai`
client), counts coverage, and the route controller rolls back when live agreement or coverage fall."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import openai
import pytest

from orchestrator.decision import TeacherUsage, decide
from services.customizer.service import train_candidate
from services.deployment.gateway.app import create_gateway
from services.deployment.rollout import control_routes, deploy
from services.deployment.routes import Route, RouteStore
from services.deployment.traffic_log import TrafficLogger
from services.domain.evaluation import EvalKind
from services.domain.queue import make_celery_app
from services.domain.settings import PromotionPolicy, Settings
from services.evaluator.runner import evaluate
from tests.gateway.fake_teacher import behind_teacher, fake_teacher
from tests.model_plane import SYSTEM, model_plane
from tests.servers import serve, wait_until

POLICY = {"min_score": 0.999, "min_eval_size": 10, "min_coverage": 0.2, "min_agreement": 0.5, "rollout": "direct",
          "live_min_requests": 6, "monitor_share": 1.0}


def _ask(client: openai.OpenAI, text: str) -> tuple[str, str]:
    raw = client.chat.completions.with_raw_response.create(
        model="news_topic", messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}])
    return raw.headers["x-flywheel-served-by"], raw.parse().choices[0].message.content or ""



@pytest.fixture()
def selective(tmp_path: Path) -> Any:
    # The encoder head alone (no TF-IDF half): on keyword topics the ensemble is perfect and would be promoted in full.
    plane = model_plane(tmp_path, records=200, finetune="head", lexical_mix=0.0)
    plane.settings = Settings.model_validate({**plane.settings.model_dump(), "promotion": POLICY})
    artifact = train_candidate(plane.settings, "tiny-clf", plane.dataset.dataset_id)
    result = evaluate(plane.settings, candidate="tiny-clf", dataset_id=plane.dataset.dataset_id,
                      kind=EvalKind.CUSTOMIZED, artifact=artifact)
    decision = decide("news_topic", [result], PromotionPolicy(**POLICY), plane.settings.pricing,
                      teacher_usage=TeacherUsage(prompt_tokens=1200, completion_tokens=5))
    return plane, artifact, result, decision


def test_a_selective_decision_is_deployed_with_its_threshold(selective: Any) -> None:
    plane, artifact, result, decision = selective
    block = result.metrics["selective"]
    assert block["method"].startswith("planned on out-of-fold"), "the walk starts where records the report never saw say"
    assert block["n_report"] == plane.dataset.splits["eval"]["count"]
    assert decision.chosen == "tiny-clf" and decision.mode == "selective", decision.reason
    assert decision.cascade.threshold == block["threshold"] and "selectively" in decision.reason
    (verdict,) = decision.verdicts
    assert verdict.effective_cost_per_1k_requests is not None
    assert verdict.effective_cost_per_1k_requests < decision.teacher_cost_per_1k_requests, "it saves money"
    routes = RouteStore(plane.settings.job_store.url)
    route = deploy(Path(plane.settings.artifacts.root), routes, decision, job_id=None)
    assert route.phase == "full" and route.cascade["threshold"] == block["threshold"]
    assert route.cascade["target_agreement"] == POLICY["min_agreement"]


def test_gateway_routes_by_confidence_and_controller_rolls_back(selective: Any, tmp_path: Path) -> None:
    plane, _, _, decision = selective
    with serve(fake_teacher()) as teacher_url:
        settings = behind_teacher(plane.settings, teacher_url, tmp_path, promotion=POLICY)
        routes = RouteStore(settings.job_store.url)
        route = deploy(Path(settings.artifacts.root), routes, decision, job_id=None)
        gateway = create_gateway(settings, logger=TrafficLogger(make_celery_app(settings.queue, name="t"),
                                                                settings.gateway.spool_path))
        with serve(gateway) as gateway_url:
            client = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key="unused", max_retries=0)
            # Threshold 0: every answer is confident enough. The teacher (monitor_share 1) answers "Macro"
            # to dividend headlines while the student answers "Dividend": live agreement collapses.
            set_threshold(routes, route, 0.0)
            served = [_ask(client, f"Acme dividend increase {i}") for i in range(8)]
            assert all(by == "student" for by, _ in served)
            assert sum(text == "[[[Dividend]]]" for _, text in served) >= 6, served
            wait_until(lambda: routes.agreement(routes.get("news_topic", fresh=True))[0] >= 8)
            (action,) = control_routes(routes, settings.promotion_policy)
            assert action["action"] == "rollback" and "live agreement on the served share" in action["reason"]
            assert routes.get("news_topic", fresh=True).phase == "teacher"

            # Threshold above 1: the student is asked but never sure; the teacher answers and coverage falls to 0.
            route = deploy(Path(settings.artifacts.root), routes, decision, job_id=None)
            set_threshold(routes, route, 1.01)
            assert all(_ask(client, f"Acme profit misses forecast {i}")[0] == "teacher" for i in range(8))
            gateway.state.usage.flush()
            asked, coverage = routes.coverage(routes.get("news_topic", fresh=True))
            assert asked == 8 and coverage == 0.0
            (action,) = control_routes(routes, settings.promotion_policy)
            assert action["action"] == "rollback" and "coverage floor" in action["reason"]


def set_threshold(routes: RouteStore, route: Route, threshold: float) -> Route:
    moved = routes.set(route.model_copy(update={"cascade": {**(route.cascade or {}), "threshold": threshold}}),
                       action="test", detail={"reason": f"test: threshold {threshold}"})
    time.sleep(1.1)  # the gateway's route cache
    return moved
