"""The deployment worker's task (queue `deployment`): carry out a promotion decision."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from celery import Celery

from services.deployment.registry import set_alias
from services.deployment.rollout import control_routes, deploy
from services.deployment.routes import Route, RouteStore
from services.domain.jobs import JobReporter, JobStatus
from services.domain.settings import Settings
from services.domain.stage_runner import StageContext, run_stage
from services.domain.tasks import DEPLOY, QUEUE_OF, ROUTE_CONTROLLER, DeployPayload
from services.models.students.registry import kind_spec


def register(app: Celery, settings: Settings, reporter: JobReporter | None = None) -> None:
    routes = RouteStore(settings.job_store.url)

    def prepare_serving(route: Route) -> dict[str, Any]:
        # LoRA adapters are mounted on a vLLM server of their base model; whole models are served by the gateway.
        if (settings.deployment.backend == "kubernetes" and route.student_kind is not None
                and kind_spec(route.student_kind).weights == "adapter"):
            from services.deployment.backends.kubernetes import KubernetesDeployer, api_client, roll_out, spec_from

            return roll_out(settings, KubernetesDeployer(api_client(), spec_from(settings)), routes.all(), route)
        return {}

    @app.task(name=DEPLOY, queue=QUEUE_OF[DEPLOY], acks_late=True, bind=True, shared=False)
    def deploy_task(self: Any, upstream: dict[str, Any] | None = None, *, payload: dict[str, Any]) -> dict[str, Any]:
        """Put the chosen student's route into its first phase (idempotent: the same decision, the same route)."""
        request = DeployPayload.model_validate(payload)

        def work(ctx: StageContext) -> dict[str, Any]:
            route = deploy(Path(settings.artifacts.root), routes, request.decision,
                           job_id=request.job.job_id if request.job else None, prepare=prepare_serving)
            aliases = {"challenger": set_alias(settings, route.workload_id, route.artifact_id, "challenger")}
            if route.phase == "full":
                aliases["champion"] = set_alias(settings, route.workload_id, route.artifact_id, "champion")
            return {"mlflow_aliases": aliases, "cascade": route.cascade, "workload_id": route.workload_id, "phase": route.phase, "candidate": route.candidate,
                    "artifact_id": route.artifact_id, "canary_percent": route.canary_percent}

        outcome = run_stage(self, reporter, request.job, work, upstream=upstream)
        if request.job is not None and reporter is not None:
            # The job completes once its decision is carried out (or fails with the reason it could not be).
            if outcome["ok"]:
                reporter.set_job(request.job.job_id, status=JobStatus.COMPLETED)
            elif not outcome.get("cancelled"):
                reporter.set_job(request.job.job_id, status=JobStatus.FAILED, error=f"deploy failed: {outcome['error']}")
        return outcome

    @app.task(name=ROUTE_CONTROLLER, queue=QUEUE_OF[ROUTE_CONTROLLER], shared=False)
    def route_controller_task() -> list[dict[str, Any]]:
        """Celery beat, every minute: promote or roll back routes by live agreement with the teacher."""
        actions = control_routes(routes, settings.promotion_policy)
        for action in actions:
            if action["to"] == "full":
                route = routes.get(action["workload_id"], fresh=True)
                set_alias(settings, route.workload_id, route.artifact_id, "champion")
        return actions
