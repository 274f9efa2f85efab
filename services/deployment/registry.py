"""Move the MLflow model-registry aliases of a workload's model as routes change.

`challenger`: the student just deployed (its first phase). `champion`: the student serving in
`full`. The version is the one the orchestrator registered for the artifact (tag `artifact_id`).
Registry trouble never blocks serving: failures are logged and the route change stands.
"""

from __future__ import annotations

import logging

from services.domain.settings import Settings

log = logging.getLogger(__name__)


def set_alias(settings: Settings, workload_id: str, artifact_id: str | None, alias: str) -> str | None:
    """Point `alias` at the version registered for `artifact_id`; return that version, or None."""
    if not settings.tracking.enabled or not artifact_id:
        return None
    try:
        from mlflow.tracking import MlflowClient

        uri = settings.tracking.tracking_uri
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        name = f"{settings.tracking.experiment_prefix}-{workload_id}"
        versions = [v for v in client.search_model_versions(f"name='{name}'") if v.tags.get("artifact_id") == artifact_id]
        if not versions:
            log.warning("no registered version of %s for artifact %s; alias %s not moved", name, artifact_id[:12], alias)
            return None
        version = str(max(int(v.version) for v in versions))
        client.set_registered_model_alias(name, alias, version)
        return version
    except Exception as exc:  # noqa: BLE001 - the registry is bookkeeping; serving goes on
        log.warning("cannot move alias %s of %s: %s", alias, workload_id, exc)
        return None
