"""The decision is one typed record from the decide task to the deploy: it round-trips through the job
store, decisions stored before the approval fields existed still load, and approval moves it on and hands
the deploy task the same record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from sqlalchemy import text

from orchestrator.decision import decide
from orchestrator.jobs.service import Conflict, JobService
from orchestrator.jobs.store import JobStore
from orchestrator.jobs.view import job_summary, job_view
from services.domain.decisions import DecisionStatus, PromotionDecision, SelectiveCascade
from services.domain.jobs import JobStatus
from services.domain.settings import Settings
from services.domain.tasks import DEPLOY, DeployPayload
from tests.factories import promotion_decision
from tests.unit.orchestrator.test_decision import POLICY, PRICING, result

# A selective decision as `finish_job` stored it before the record carried its status: the dump plus the
# status string (and, once approved, the approver), no approval time; the cascade block as the evaluator
# of that version wrote it (its calibration without a threshold).
STORED_BEFORE = {
    "workload_id": "news_topic", "chosen": "tiny-clf", "artifact_id": "a" * 64,
    "reason": "promote tiny-clf selectively", "rollout": "direct", "canary_percent": None,
    "requires_approval": True, "teacher_cost_per_1k_requests": 0.02, "teacher_cost_estimated": False,
    "chosen_cost_per_1k_requests": 0.001, "mode": "selective",
    "cascade": {"threshold": 0.61, "coverage": 0.55, "served": 110, "agreement": 0.96, "agreement_ci_low": 0.92,
                "n_calibration": 800, "n_report": 200, "confidence": 0.95, "target_agreement": 0.9,
                "method": "fixed-sequence testing on the report records",
                "calibration": {"coverage": 0.5, "served": 400, "agreement": 0.95, "agreement_ci_low": 0.93, "n": 800},
                "curve": [{"coverage": 0.5, "agreement": 0.97}, {"coverage": 1.0, "agreement": 0.88}]},
    "skipped": {}, "notes": [],
    "verdicts": [{"candidate": "tiny-clf", "qualified": True, "reasons": [], "metric_name": "f1_vs_teacher",
                  "score": 0.8, "ci_low": 0.75, "n": 200, "latency_p95_ms": 3.0, "cost_per_1k_requests": 0.001,
                  "model_size_bytes": 4096, "artifact_id": "a" * 64, "mode": "selective", "cascade": None,
                  "effective_cost_per_1k_requests": 0.01}],
    "policy": {"min_score": 0.9}, "status": "approved", "approved_by": "ops",
}


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite'}")


def _job_with_raw_decision(store: JobStore, decision: dict[str, Any]) -> str:
    """A completed job whose decision column holds exactly this JSON, as an older version wrote it."""
    job = store.create_job(workload_id="news_topic", client_id=None, stages=[])
    store.set_job(job.id, status=JobStatus.COMPLETED)
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE jobs SET decision = :body WHERE id = :id"),
                           {"body": json.dumps(decision), "id": job.id})
    return job.id


@pytest.mark.parametrize(("score", "require_approval", "status"), [
    (0.5, False, DecisionStatus.KEEP_TEACHER), (0.5, True, DecisionStatus.KEEP_TEACHER),
    (0.95, False, DecisionStatus.RECORDED), (0.95, True, DecisionStatus.AWAITING_APPROVAL)])
def test_decide_starts_a_decision_in_the_status_of_its_choice(score: float, require_approval: bool,
                                                              status: DecisionStatus) -> None:
    policy = POLICY.model_copy(update={"require_approval": require_approval})
    decision = decide("news", [result("a", score, (score - 0.02, score + 0.02))], policy, PRICING)
    assert decision.status is status and (decision.chosen is not None) is (score > 0.9)
    assert decision.deploys is (status is DecisionStatus.RECORDED)


@pytest.mark.parametrize("status", list(DecisionStatus))
def test_every_status_round_trips_through_the_job_store(store: JobStore, status: DecisionStatus) -> None:
    decision = promotion_decision("tiny-clf", "a" * 64, status=status)
    job = store.create_job(workload_id="news_topic", client_id=None, stages=[])
    store.set_job(job.id, decision=decision)
    loaded = store.get_job(job.id).decision
    assert isinstance(loaded, PromotionDecision) and loaded == decision and loaded.status is status
    assert job_view(store.get_job(job.id))["decision"]["status"] == status.value


def test_a_decision_stored_before_the_approval_fields_loads_and_shows_the_same(store: JobStore) -> None:
    job_id = _job_with_raw_decision(store, STORED_BEFORE)
    job = store.get_job(job_id)
    decision = job.decision
    assert decision is not None and decision.status is DecisionStatus.APPROVED
    assert decision.approved_by == "ops" and decision.approved_at is None
    assert isinstance(decision.cascade, SelectiveCascade) and decision.cascade.threshold == 0.61
    assert decision.cascade.calibration == STORED_BEFORE["cascade"]["calibration"]
    # The API's JSON keeps its shape: what was stored, plus the one new field.
    assert job_view(job)["decision"] == {**STORED_BEFORE, "approved_at": None}
    assert job_summary(job)["chosen"] == "tiny-clf"


def _sent_deploys(app: Celery) -> list[dict[str, Any]]:
    """The deploy tasks waiting on the in-memory broker's `deployment` queue (payloads)."""
    sent = []
    with app.connection_for_read() as connection, connection.SimpleQueue("deployment") as queue:
        while queue.qsize():
            message = queue.get(timeout=1)
            assert message.headers["task"] == DEPLOY
            _, kwargs, _ = message.decode()
            sent.append(kwargs["payload"])
            message.ack()
    return sent


def test_approve_moves_the_decision_on_and_hands_the_deployer_the_record(store: JobStore, tmp_path: Path) -> None:
    settings = Settings.model_validate({"job_store": {"url": str(store.engine.url)},
                                        "artifacts": {"root": str(tmp_path / "artifacts")}})
    app = Celery("test-approve", broker="memory://", set_as_current=False)
    jobs = JobService(settings, store, app)
    job = store.create_job(workload_id="news_topic", client_id=None, stages=[])
    store.set_job(job.id, status=JobStatus.COMPLETED,
                  decision=promotion_decision("tiny-clf", "a" * 64, requires_approval=True))

    approved = jobs.approve(job.id, actor="ops").decision

    assert approved is not None and approved.status is DecisionStatus.APPROVED and approved.deploys
    assert approved.approved_by == "ops" and approved.approved_at is not None
    assert store.get_job(job.id).decision == approved
    (payload,) = _sent_deploys(app)
    sent = DeployPayload.model_validate(payload)
    assert sent.decision == approved and sent.job is not None and sent.job.job_id == job.id
    [event] = store.events(kind="job.approved")
    assert event.actor == "ops" and event.detail == {"chosen": "tiny-clf", "artifact_id": "a" * 64}
    with pytest.raises(Conflict, match="decision status: approved"):
        jobs.approve(job.id, actor="ops")
