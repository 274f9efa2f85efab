"""Live agreement moves routes: shadow comparisons and monitoring samples recorded by the gateway,
and the route controller promoting (shadow -> canary -> full) or rolling back by them."""

from __future__ import annotations

import time
from pathlib import Path

from openai import OpenAI

from services.customizer.service import train_candidate
from services.deployment.gateway.app import create_gateway
from services.deployment.rollout import control_routes, deploy
from services.deployment.routes import Route, RouteStore
from services.deployment.traffic_log import TrafficLogger
from services.domain.queue import make_celery_app
from services.domain.settings import PromotionPolicy
from tests.factories import promotion_decision
from tests.gateway.fake_teacher import behind_teacher, fake_teacher
from tests.model_plane import SYSTEM, model_plane
from tests.servers import serve


def test_controller_promotes_on_agreement_and_rolls_back_below_the_floor(tmp_path: Path) -> None:
    routes = RouteStore(f"sqlite:///{tmp_path / 'jobs.sqlite'}")
    policy = PromotionPolicy(live_min_requests=10, live_agreement_floor=0.9, rollback_agreement_floor=0.8,
                             canary_percent=20)
    route = routes.set(Route(workload_id="w", phase="shadow", candidate="s", artifact_id="a" * 64,
                             student_kind="encoder_classifier"), action="deploy")
    for _ in range(9):
        routes.add_sample(route, agree=True)
    assert control_routes(routes, lambda _: policy) == [], "9 compared requests are not enough"
    routes.add_sample(route, agree=False)  # 9/10 = 0.9
    (moved,) = control_routes(routes, lambda _: policy)
    assert moved["action"] == "promote" and moved["to"] == "canary"
    canary = routes.get("w", fresh=True)
    assert canary.canary_percent == 20 and routes.agreement(canary) == (0, None), "a new phase counts afresh"
    for _ in range(10):
        routes.add_sample(canary, agree=True)
    assert control_routes(routes, lambda _: policy)[0]["to"] == "full"
    full = routes.get("w", fresh=True)
    for i in range(10):
        routes.add_sample(full, agree=i < 7)  # 0.7 < 0.8
    (back,) = control_routes(routes, lambda _: policy)
    assert back["action"] == "rollback" and routes.get("w", fresh=True).phase == "teacher"
    assert [h["action"] for h in routes.history("w")] == ["rollback", "promote", "promote", "deploy"]


def test_gateway_records_shadow_and_monitoring_samples(tmp_path: Path) -> None:
    plane = model_plane(tmp_path, records=120, max_steps=3)
    artifact = train_candidate(plane.settings, "tiny-clf", plane.dataset.dataset_id)
    teacher = fake_teacher()
    with serve(teacher) as teacher_url:
        settings = behind_teacher(plane.settings, teacher_url, tmp_path, promotion={"monitor_share": 1.0})
        routes = RouteStore(settings.job_store.url)
        decision = promotion_decision("tiny-clf", artifact.artifact_id, rollout="shadow")
        shadow = deploy(Path(settings.artifacts.root), routes, decision, job_id=None)
        logger = TrafficLogger(make_celery_app(settings.queue, name="t"), settings.gateway.spool_path)
        with serve(create_gateway(settings, logger=logger)) as gateway_url:
            client = OpenAI(base_url=f"{gateway_url}/v1", api_key="unused", max_retries=0)
            for text in ("Acme profit up", "Fed holds rates", "Initech earnings"):
                raw = client.chat.completions.with_raw_response.create(
                    model="news_topic", messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}])
                assert raw.headers["x-flywheel-served-by"] == "teacher"
                assert raw.headers["x-flywheel-route-phase"] == "shadow"
            deadline = time.monotonic() + 30
            while routes.agreement(shadow)[0] < 3 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert routes.agreement(shadow)[0] == 3, "every shadowed request was compared"

            full = routes.set(shadow.model_copy(update={"phase": "full", "canary_percent": 100}), action="promote")
            time.sleep(1.1)  # the gateway's route cache
            before = len(teacher.state.received)
            raw = client.chat.completions.with_raw_response.create(
                model="news_topic", messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Acme profit"}])
            assert raw.headers["x-flywheel-served-by"] == "student"
            deadline = time.monotonic() + 30
            while routes.agreement(full)[0] < 1 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert routes.agreement(full)[0] == 1 and len(teacher.state.received) == before + 1, \
                "with monitor_share 1 the teacher also answered, in the background"
    logged = []
    while not logger._queue.empty():
        logged.append(logger._queue.get_nowait())
    assert len(logged) == 4, "3 shadowed teacher answers + 1 monitoring answer are logged for the flywheel"
