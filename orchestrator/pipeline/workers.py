"""Which module registers each queue's tasks, and the composition root that builds a worker's Celery app."""

from __future__ import annotations

import importlib
from typing import Any

WORKER_MODULES = {
    "datastore": "services.datastore.worker",
    "customizer": "services.customizer.worker",
    "evaluator": "services.evaluator.worker",
    "deployment": "services.deployment.worker",
    "orchestrator": "orchestrator.pipeline.tasks",
}
ALL_QUEUES = tuple(WORKER_MODULES)


def registered_app(settings: Any, queues: list[str] | tuple[str, ...], *, store: Any = None) -> Any:
    """A Celery app with the tasks of `queues` registered (imports those workers only).

    Every task reports on its job through the job store (`store`, opened from `job_store.url`
    when not given): the workers never import the orchestrator; this composition root hands
    them the store as their `JobReporter`.
    """
    from orchestrator.jobs.store import JobStore
    from services.domain.queue import make_celery_app

    app = make_celery_app(settings.queue, name="flywheel-worker")
    store = store if store is not None else JobStore(settings.job_store.url)
    for queue in queues:
        importlib.import_module(WORKER_MODULES[queue]).register(app, settings, store)
    return app
