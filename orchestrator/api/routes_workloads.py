"""/api/workloads: what each workload is doing, who serves it, and the operator's promote and rollback."""

from __future__ import annotations

from fastapi import APIRouter

from orchestrator.api.deps import JobStoreDep, ReadCaller, RouteStoreDep, SettingsDep, WriteCaller
from orchestrator.api.schemas_workloads import RouteView, WorkloadList
from orchestrator.workloads import workloads_summary
from services.deployment.routes import RouteStore

router = APIRouter(prefix="/api/workloads", tags=["workloads"])


@router.get("", summary="Workloads: record counts, last job, latest decision, route, traffic")
def workloads(settings: SettingsDep, store: JobStoreDep, routes: RouteStoreDep, _: ReadCaller) -> WorkloadList:
    return WorkloadList.model_validate({"workloads": workloads_summary(settings, store, routes)})


def _route_view(routes: RouteStore, workload_id: str) -> RouteView:
    return RouteView.model_validate({"route": routes.get(workload_id, fresh=True),
                                     "history": routes.history(workload_id, limit=20)})


@router.get("/{workload_id}/route", summary="Who serves the workload, and the route history")
def get_route(workload_id: str, routes: RouteStoreDep, _: ReadCaller) -> RouteView:
    return _route_view(routes, workload_id)


@router.post("/{workload_id}/promote", summary="Move the student's route one phase on (shadow -> canary -> full)")
def promote_route(workload_id: str, settings: SettingsDep, routes: RouteStoreDep, caller: WriteCaller) -> RouteView:
    from services.deployment.rollout import promote

    promote(routes, workload_id, canary_percent=settings.promotion_policy(workload_id).canary_percent,
            reason=f"operator {caller.name}")
    return _route_view(routes, workload_id)


@router.post("/{workload_id}/rollback", summary="Restore the previous route (the previous champion or the teacher)")
def rollback_route(workload_id: str, routes: RouteStoreDep, caller: WriteCaller) -> RouteView:
    from services.deployment.rollout import rollback

    rollback(routes, workload_id, reason=f"operator {caller.name}")
    return _route_view(routes, workload_id)
