"""The evaluator worker's task (queue `evaluator`): one evaluation of one candidate.

Returns the public result (f1_vs_teacher / score_vs_teacher names) and the full result (for the
decision). The job's cancel flag stops an evaluation between batches of requests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from celery import Celery

from services.domain.artifacts import find_artifacts
from services.domain.errors import InsufficientData
from services.domain.evaluation import EvalKind
from services.domain.jobs import JobReporter
from services.domain.settings import Settings
from services.domain.stage_runner import StageContext, run_stage
from services.domain.tasks import EVALUATE, QUEUE_OF, EvaluatePayload, upstream_value
from services.evaluator.runner import evaluate


def register(app: Celery, settings: Settings, reporter: JobReporter | None = None) -> None:
    @app.task(name=EVALUATE, queue=QUEUE_OF[EVALUATE], acks_late=True, bind=True, shared=False)
    def evaluate_task(self: Any, upstream: dict[str, Any] | None = None, *, payload: dict[str, Any]) -> dict[str, Any]:
        """Evaluate one candidate (base, icl or customized) against the teacher's answers."""
        request = EvaluatePayload.model_validate(payload)

        def work(ctx: StageContext) -> dict[str, Any]:
            dataset_id = upstream_value(request.dataset_id, upstream, "dataset_id")
            kind = EvalKind(request.kind)
            artifact = None
            artifact_id = request.artifact_id or (upstream or {}).get("artifact_id")
            if kind is EvalKind.CUSTOMIZED and artifact_id:
                matches = [a for a in find_artifacts(Path(settings.artifacts.root), candidate=request.candidate)
                           if a.artifact_id == artifact_id]
                if not matches:
                    raise InsufficientData(f"no artifact {artifact_id[:12]} of {request.candidate}")
                artifact = matches[0]

            def on_progress(done: int, total: int) -> None:
                ctx.check_cancelled()
                ctx.progress(done / total if total else None, detail={"requests_done": done, "requests": total})

            result = evaluate(settings, candidate=request.candidate, dataset_id=dataset_id, kind=kind,
                              artifact=artifact, on_progress=on_progress)
            return {"dataset_id": dataset_id, "public": result.to_public(),
                    "result": result.model_dump(mode="json")}

        return run_stage(self, reporter, request.job, work, upstream=upstream)
