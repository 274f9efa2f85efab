"""Cascade: the threshold calibrated on the eval set, and the gateway sending unsure answers to the teacher."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from services.customizer.service import train_candidate
from services.deployment.cascade import calibrate
from services.deployment.gateway.app import create_gateway
from services.deployment.rollout import deploy
from services.deployment.routes import RouteStore
from services.deployment.traffic_log import TrafficLogger
from services.deployment.worker import calibrate_route
from services.domain.queue import make_celery_app
from tests.gateway.fake_teacher import behind_teacher, fake_teacher
from tests.model_plane import SYSTEM, model_plane
from tests.servers import serve


def test_calibration_takes_the_largest_share_that_meets_the_target() -> None:
    confidences = [0.99, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    agrees = [True, True, True, True, False, True, False, False]
    result = calibrate(confidences, agrees, target_agreement=0.8)
    assert result.threshold == 0.6 and result.student_share == 6 / 8 and result.agreement == 5 / 6
    assert calibrate(confidences, agrees, target_agreement=1.0).threshold == 0.8
    nobody = calibrate([0.9, 0.8], [False, False], target_agreement=0.5)
    assert nobody.threshold is None and nobody.student_share == 0.0
    ties = calibrate([0.9, 0.9, 0.5], [True, False, True], target_agreement=0.9)
    assert ties.threshold is None, "a threshold admits every answer at its confidence: ties are not split"


def test_unsure_student_answers_go_to_the_teacher(tmp_path: Path) -> None:
    plane = model_plane(tmp_path, records=120, max_steps=3)
    artifact = train_candidate(plane.settings, "tiny-clf", plane.dataset.dataset_id)
    with serve(fake_teacher()) as teacher_url:
        settings = behind_teacher(plane.settings, teacher_url, tmp_path, promotion={"monitor_share": 0.0})
        routes = RouteStore(settings.job_store.url)
        route = deploy(Path(settings.artifacts.root), routes, {"chosen": "tiny-clf", "artifact_id": artifact.artifact_id,
                                                               "rollout": "direct"}, job_id=None)
        calibrated = calibrate_route(settings, routes, route, target=0.0)
        assert calibrated.cascade["n"] == plane.dataset.splits["eval"]["count"]
        assert calibrated.cascade["student_share"] == 1.0, "target 0: the student may answer everything"
        logger = TrafficLogger(make_celery_app(settings.queue, name="t"), settings.gateway.spool_path)
        with serve(create_gateway(settings, logger=logger)) as gateway_url:
            body = {"model": "news_topic", "messages": [{"role": "system", "content": SYSTEM},
                                                        {"role": "user", "content": "Acme profit"}]}
            assert httpx.post(f"{gateway_url}/v1/chat/completions", json=body).headers["x-flywheel-served-by"] == "student"
            routes.set(calibrated.model_copy(update={"cascade": {**calibrated.cascade, "threshold": 1.01}}),
                       action="calibrate", detail={"reason": "test: nobody is that sure"})
            time.sleep(1.1)
            unsure = httpx.post(f"{gateway_url}/v1/chat/completions", json=body)
            assert unsure.headers["x-flywheel-served-by"] == "teacher" and unsure.json()["model"] == "big-teacher"
            assert "flywheel_gateway_cascade_to_teacher_total{workload=\"news_topic\"} 1.0" in \
                httpx.get(f"{gateway_url}/metrics").text
