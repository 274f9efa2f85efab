"""Carry out a promotion decision, and roll back: the deployment manager's route changes.

`deploy` puts the chosen student's route into the first phase its policy names (`direct` ->
full, `canary` -> canary at canary_percent, `shadow` -> shadow), remembering the route it
replaces. `rollback` restores that previous route (the previous champion or the teacher).
Every change is a route event with its reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.deployment.routes import Route, RouteStore
from services.domain.artifacts import find_artifacts
from services.domain.decisions import PromotionDecision, SelectiveCascade
from services.domain.errors import InsufficientData

FIRST_PHASE = {"direct": "full", "canary": "canary", "shadow": "shadow"}


def deploy(artifacts_root: Path, routes: RouteStore, decision: PromotionDecision, *, job_id: str | None,
           reason: str = "promotion decision", prepare: Any = None) -> Route:
    """`prepare(route) -> dict` runs before the route is switched (e.g. roll out and wait for vLLM pods)."""
    chosen, artifact_id = decision.chosen, decision.artifact_id
    if not chosen or not artifact_id:
        raise InsufficientData("the decision chose no student: nothing to deploy (the teacher keeps serving)")
    matches = [a for a in find_artifacts(artifacts_root, candidate=chosen) if a.artifact_id == artifact_id]
    if not matches:
        raise InsufficientData(f"artifact {artifact_id[:12]} of {chosen} is gone (deleted or erased); not deployed")
    artifact = matches[0]
    current = routes.get(artifact.workload_id, fresh=True)
    phase = FIRST_PHASE[decision.rollout]
    route = Route(workload_id=artifact.workload_id, phase=phase, candidate=chosen, artifact_id=artifact.artifact_id,
                  artifact_path=artifact.path, student_kind=artifact.kind, base_model=artifact.base_model,
                  canary_percent=decision.canary_percent or (100 if phase == "full" else 0), job_id=job_id,
                  static_prompt=artifact.static_prompt, prompt_tag=artifact.prompt_tag, labels=artifact.labels,
                  answer_template=artifact.answer_template, cascade=_cascade(decision.cascade),
                  previous=current.model_dump(mode="json", exclude={"previous"}) if current.phase != "teacher" or
                  current.candidate else None)
    prepared = prepare(route) if prepare is not None else {}
    return routes.set(route, action="deploy", detail={"reason": reason, "rollout": decision.rollout, **prepared})


def _cascade(block: SelectiveCascade | None) -> dict[str, Any] | None:
    """A selective decision's threshold and the bounds the route controller watches."""
    if block is None or block.threshold is None:  # only a selective decision carries one
        return None
    return block.model_dump(mode="json", include={"threshold", "coverage", "agreement", "agreement_ci_low",
                                                  "target_agreement", "n_calibration", "n_report", "confidence",
                                                  "method"})


def rollback(routes: RouteStore, workload_id: str, *, reason: str) -> Route:
    current = routes.get(workload_id, fresh=True)
    if current.phase == "teacher" and current.candidate is None:
        raise InsufficientData(f"workload {workload_id} is already served by the teacher: nothing to roll back")
    restored = Route.model_validate(current.previous) if current.previous else Route.teacher(workload_id)
    return routes.set(restored, action="rollback", detail={"reason": reason, "from": current.candidate})


NEXT_PHASE = {"shadow": "canary", "canary": "full"}


def promote(routes: RouteStore, workload_id: str, *, canary_percent: int, reason: str) -> Route:
    """Move a student's route one phase on: shadow -> canary -> full."""
    current = routes.get(workload_id, fresh=True)
    if current.phase not in NEXT_PHASE:
        raise InsufficientData(f"workload {workload_id} is in phase {current.phase!r}: nothing to promote "
                               + ("(run a job to choose a student)" if current.phase == "teacher" else "(already full)"))
    phase = NEXT_PHASE[current.phase]
    moved = current.model_copy(update={"phase": phase, "canary_percent": 100 if phase == "full" else canary_percent})
    return routes.set(moved, action="promote", detail={"reason": reason, "from_phase": current.phase})


def control_routes(routes: RouteStore, policy_for: Any) -> list[dict[str, Any]]:
    """The route controller's tick: move each student route on, or back, by its live agreement.

    A route with at least `live_min_requests` compared requests since it was set rolls back below
    `rollback_agreement_floor`, and moves shadow -> canary -> full at or above `live_agreement_floor`.
    A selective route (one with a confidence threshold) also rolls back when its live agreement on the
    served share is, with the policy's confidence, below the agreement its decision promised, or when it
    serves less than `live_min_coverage` of the requests it is asked (the traffic moved away from what it
    knows: it saves little and its guarantee was measured on other traffic).
    """
    actions = []
    for route in routes.all():
        if route.candidate is None or route.phase == "teacher":
            continue
        policy = policy_for(route.workload_id)
        breach = _selective_breach(routes, route, policy) if route.cascade else None
        if breach is not None:
            moved = rollback(routes, route.workload_id, reason=breach)
            actions.append({"workload_id": route.workload_id, "action": "rollback", "to": moved.phase, "reason": breach})
            continue
        n, share = routes.agreement(route)
        if n < policy.live_min_requests or share is None:
            continue
        why = f"live agreement {share:.3f} over {n} requests"
        if share < policy.rollback_agreement_floor:
            moved = rollback(routes, route.workload_id, reason=f"{why} < rollback floor {policy.rollback_agreement_floor}")
            actions.append({"workload_id": route.workload_id, "action": "rollback", "to": moved.phase, "reason": why})
        elif route.phase in NEXT_PHASE and share >= policy.live_agreement_floor:
            moved = promote(routes, route.workload_id, canary_percent=policy.canary_percent,
                            reason=f"{why} >= floor {policy.live_agreement_floor}")
            actions.append({"workload_id": route.workload_id, "action": "promote", "to": moved.phase, "reason": why})
    return actions


def _selective_breach(routes: RouteStore, route: Route, policy: Any) -> str | None:
    """Why a selective route left its bounds, or None."""
    from services.domain.bounds import binomial_upper_bound

    cascade = route.cascade or {}
    target = float(cascade.get("target_agreement") or policy.min_agreement)
    confidence = float(cascade.get("confidence") or 0.95)
    n, share = routes.agreement(route)
    if n >= policy.live_min_requests and share is not None:
        upper = binomial_upper_bound(round(share * n), n, confidence)
        if upper < target:
            return (f"selective: live agreement on the served share {share:.3f} over {n} monitored requests "
                    f"(upper bound {upper:.3f}) is below the promised {target:.3f}")
    asked, coverage = routes.coverage(route)
    floor = policy.live_min_coverage if policy.live_min_coverage is not None else policy.min_coverage / 2
    if asked >= policy.live_min_requests and coverage is not None and coverage < floor:
        return (f"selective: the student answered {coverage:.0%} of {asked} requests it was asked, below the "
                f"live coverage floor {floor:.0%} (decided coverage {float(cascade.get('coverage') or 0):.0%})")
    return None
