"""A job becomes a Celery canvas built BY TASK NAME (this module imports no worker and no torch):

    build_dataset -> chord( per candidate: base_eval | icl_eval | (customize -> customized_eval) )
                  -> decide

The build's envelope flows into every header task (they take the dataset id from it); a
training's envelope flows into its customized evaluation (the artifact id). The chord body
(`decide`, on the orchestrator queue) reads every stage's result from the job store; an error
callback marks the job failed if the chord itself breaks (a task killed by its time limit). The deploy
task is sent by name too, after `decide` or when a person approves the decision (`send_deploy`).
"""

from __future__ import annotations

from typing import Any

from celery import Celery, chain, chord, group
from celery.canvas import Signature

from services.domain.decisions import PromotionDecision
from services.domain.jobs import EVAL_STAGE_OF_KIND, JobOverrides, JobRef, Stage
from services.domain.settings import CandidateSettings, Settings
from services.domain.tasks import (
    BUILD_DATASET,
    DECIDE,
    DEPLOY,
    EVALUATE,
    JOB_FAILED,
    QUEUE_OF,
    TRAIN,
    DeployPayload,
)


def job_candidates(settings: Settings, overrides: JobOverrides) -> list[CandidateSettings]:
    """The candidates a job runs: every enabled one, or the subset the job names (validated by the caller),
    less those it leaves out (`skipped_candidates`)."""
    skipped = skipped_candidates(settings, overrides)
    return [c for c in _wanted(settings, overrides) if c.name not in skipped]


def _wanted(settings: Settings, overrides: JobOverrides) -> list[CandidateSettings]:
    if overrides.candidates is not None:
        return [settings.candidate(name) for name in overrides.candidates]
    return [c for c in settings.candidates if c.enabled]


def skipped_candidates(settings: Settings, overrides: JobOverrides) -> dict[str, str]:
    """Candidates the job leaves out, with the reason the decision shows. A candidate the job names explicitly
    runs anyway (the user asked for it)."""
    if overrides.candidates is not None or settings.hardware.has_gpu():
        return {}
    return {c.name: "needs a GPU (run_on: gpu) and none is present (hardware.gpu); name it in the job's "
                    "candidates to run it on CPU anyway"
            for c in _wanted(settings, overrides) if c.run_on == "gpu"}


def planned_stages(settings: Settings, overrides: JobOverrides) -> list[tuple[Stage, str | None]]:
    """Every stage row the job will have, in order (created queued, so a new job shows its plan)."""
    stages: list[tuple[Stage, str | None]] = [(Stage.BUILD_DATASET, None)]
    for candidate in job_candidates(settings, overrides):
        stages += [(Stage.BASE_EVAL, candidate.name), (Stage.ICL_EVAL, candidate.name)]
        if candidate.customize:
            stages += [(Stage.CUSTOMIZE, candidate.name), (Stage.CUSTOMIZED_EVAL, candidate.name)]
    return [*stages, (Stage.DECIDE, None)]


def _sig(app: Celery, name: str, payload: dict[str, Any]) -> Signature:
    return app.signature(name, kwargs={"payload": payload}, queue=QUEUE_OF[name])


def job_canvas(app: Celery, settings: Settings, *, job_id: str, workload_id: str, client_id: str | None,
               overrides: JobOverrides) -> Signature:
    def ref(stage: Stage, candidate: str | None = None) -> dict[str, Any]:
        return JobRef(job_id=job_id, stage=stage, candidate=candidate).model_dump(mode="json")

    header: list[Signature] = []
    for candidate in job_candidates(settings, overrides):
        name = candidate.name
        for kind in ("base", "icl"):
            header.append(_sig(app, EVALUATE, {"candidate": name, "kind": kind,
                                               "job": ref(EVAL_STAGE_OF_KIND[kind], name)}))
        if candidate.customize:
            header.append(chain(
                _sig(app, TRAIN, {"candidate": name, "overrides": overrides.training, "job": ref(Stage.CUSTOMIZE, name)}),
                _sig(app, EVALUATE, {"candidate": name, "kind": "customized",
                                     "job": ref(Stage.CUSTOMIZED_EVAL, name)}),
            ))
    decide = _sig(app, DECIDE, {"job_id": job_id})
    decide.link_error(app.signature(JOB_FAILED, args=[job_id], queue=QUEUE_OF[JOB_FAILED]))
    build = _sig(app, BUILD_DATASET, {"workload_id": workload_id, "client_id": client_id,
                                      "overrides": overrides.data, "job": ref(Stage.BUILD_DATASET)})
    if not header:
        return chain(build, decide)
    return chain(build, chord(group(header), decide))


def send_deploy(app: Celery, job_id: str, decision: PromotionDecision) -> None:
    """Hand a decision to the deployment manager, by task name (queue `deployment`); after `decide`, or on approval."""
    payload = DeployPayload(decision=decision, job=JobRef(job_id=job_id, stage=Stage.DEPLOY))
    app.send_task(DEPLOY, kwargs={"payload": payload.model_dump(mode="json")}, queue=QUEUE_OF[DEPLOY])
