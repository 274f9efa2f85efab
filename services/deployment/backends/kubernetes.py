"""The `kubernetes` serving backend: one vLLM Deployment + Service per base model, with every
promoted LoRA student of that base mounted as a LoRA module (`--enable-lora --lora-modules
NAME=PATH ...`), written against the official `kubernetes` client.

Replica consistency (the stale-adapter gap vLLM users report): the adapter set of a base model has
ONE registry, a ConfigMap; the Deployment's pod template carries the set's hash, so changing the
set rolls every replica, and a new or restarted pod is always created from the current template —
no pod can come up with a stale set. Adapters are read from a shared volume (PVC) where the
customizer publishes artifacts. Requests then go through the OpenAI-compatible Service
(`OpenAIBackend`), with the student's candidate name as `model`.
Tested against the `kmock` API emulator, which runs no controllers: tests set readiness themselves.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from typing import Any

from services.deployment.backends.openai_compat import OpenAIBackend
from services.deployment.routes import Route
from services.domain.errors import ExternalServiceError
from services.models.students.registry import kind_spec

LABEL = "flywheel.dev/base-model"


def k8s_name(base_model: str) -> str:
    return "vllm-" + re.sub(r"[^a-z0-9-]+", "-", base_model.lower()).strip("-")[:50]


@dataclass
class VllmSpec:
    namespace: str = "flywheel"
    image: str = "vllm/vllm-openai:v0.8.5"
    replicas: int = 1
    gpus: int = 1
    artifacts_pvc: str = "flywheel-artifacts"
    artifacts_mount: str = "/artifacts"
    port: int = 8000


class KubernetesDeployer:
    def __init__(self, api_client: Any, spec: VllmSpec | None = None) -> None:
        from kubernetes import client

        self.spec = spec or VllmSpec()
        self.apps, self.core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
        self.ApiException = client.exceptions.ApiException

    def apply(self, base_model: str, model_path: str, adapters: dict[str, str]) -> dict[str, Any]:
        """Create or update the base model's adapter registry, Deployment and Service; return the set and its hash."""
        name = k8s_name(base_model)
        adapter_set = dict(sorted(adapters.items()))
        digest = hashlib.sha256(json.dumps(adapter_set, sort_keys=True).encode()).hexdigest()[:16]
        config_map = {"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": f"{name}-adapters", "labels": {LABEL: name}},
                      "data": {"adapters.json": json.dumps(adapter_set, sort_keys=True), "sha256": digest}}
        args = ["--model", model_path, "--served-model-name", base_model, "--port", str(self.spec.port)]
        if adapter_set:
            args += ["--enable-lora", "--lora-modules", *(f"{n}={p}" for n, p in adapter_set.items())]
        labels = {LABEL: name}
        deployment = {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
            "spec": {"replicas": self.spec.replicas, "selector": {"matchLabels": labels}, "template": {
                "metadata": {"labels": labels, "annotations": {"flywheel.dev/adapter-set": digest}},
                "spec": {"containers": [{
                    "name": "vllm", "image": self.spec.image, "args": args,
                    "ports": [{"containerPort": self.spec.port, "name": "http"}],
                    "readinessProbe": {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 5},
                    "resources": {"limits": {"nvidia.com/gpu": str(self.spec.gpus)}},
                    "volumeMounts": [{"name": "artifacts", "mountPath": self.spec.artifacts_mount, "readOnly": True}],
                }], "volumes": [{"name": "artifacts", "persistentVolumeClaim": {
                    "claimName": self.spec.artifacts_pvc, "readOnly": True}}]}}}}
        service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": labels},
                   "spec": {"selector": labels, "ports": [{"port": self.spec.port, "targetPort": "http", "name": "http"}]}}
        self._upsert(self.core.create_namespaced_config_map, self.core.patch_namespaced_config_map,
                     f"{name}-adapters", config_map)
        self._upsert(self.apps.create_namespaced_deployment, self.apps.patch_namespaced_deployment, name, deployment)
        self._upsert(self.core.create_namespaced_service, None, name, service)
        return {"name": name, "adapters": adapter_set, "adapter_set_sha256": digest}

    def _upsert(self, create: Any, update: Any, name: str, body: dict[str, Any]) -> None:
        """Create, or patch what exists (a strategic merge on a real cluster: containers by name, args replaced)."""
        try:
            create(self.spec.namespace, body)
        except self.ApiException as exc:
            if exc.status != 409:
                raise ExternalServiceError(f"kubernetes refused {body['kind']} {name}: {exc.status} {exc.reason}",
                                           retryable=exc.status >= 500) from exc
            if update is not None:
                update(name, self.spec.namespace, body)

    def wait_ready(self, base_model: str, *, timeout_s: float = 600, poll_s: float = 2.0) -> None:
        name = k8s_name(base_model)
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.apps.read_namespaced_deployment(name, self.spec.namespace).status
            if status is not None and (status.ready_replicas or 0) >= self.spec.replicas:
                return
            if time.monotonic() > deadline:
                raise ExternalServiceError(f"deployment {name} not ready after {timeout_s:.0f} s "
                                           f"({(status.ready_replicas if status else 0) or 0}/{self.spec.replicas})",
                                           retryable=True)
            time.sleep(poll_s)

    def delete(self, base_model: str) -> None:
        name, ns = k8s_name(base_model), self.spec.namespace
        for call, resource in ((self.apps.delete_namespaced_deployment, name),
                               (self.core.delete_namespaced_service, name),
                               (self.core.delete_namespaced_config_map, f"{name}-adapters")):
            try:
                call(resource, ns)
            except self.ApiException as exc:
                if exc.status != 404:
                    raise

    def endpoint(self, base_model: str) -> str:
        return vllm_endpoint(self.spec, base_model)


def vllm_endpoint(spec: VllmSpec, base_model: str) -> str:
    """The in-cluster URL of a base model's vLLM Service: a name, so serving needs no Kubernetes API access."""
    return f"http://{k8s_name(base_model)}.{spec.namespace}.svc:{spec.port}/v1"


class KubernetesBackend:
    """Serve through the base model's vLLM Service (`endpoint_override`: tests point it at a stand-in).
    It only needs the Service's DNS name, never the Kubernetes API: the gateway runs without credentials."""

    def __init__(self, spec: VllmSpec, *, endpoint_override: str | None = None, timeout_s: float = 30.0) -> None:
        self.spec, self.endpoint_override, self.timeout_s = spec, endpoint_override, timeout_s
        self._clients: dict[str, OpenAIBackend] = {}

    def _client(self, route: Route) -> OpenAIBackend:
        url = self.endpoint_override or vllm_endpoint(self.spec, str(route.base_model))
        if url not in self._clients:
            self._clients[url] = OpenAIBackend(url, timeout_s=self.timeout_s)
        return self._clients[url]

    def chat(self, route: Route, body: dict[str, Any]) -> dict[str, Any]:
        return self._client(route).chat(route, body)

    def embed(self, route: Route, inputs: list[str], dimensions: int | None) -> dict[str, Any]:
        return self._client(route).embed(route, inputs, dimensions)


def spec_from(settings: Any) -> VllmSpec:
    d = settings.deployment
    return VllmSpec(namespace=d.namespace, image=d.vllm_image, replicas=d.replicas, gpus=d.gpus_per_replica,
                    artifacts_pvc=d.artifacts_pvc, artifacts_mount=d.artifacts_mount)


def api_client() -> Any:
    """In-cluster credentials when running in a pod, else the local kubeconfig."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


def roll_out(settings: Any, deployer: KubernetesDeployer, routes: list[Route], route: Route) -> dict[str, Any]:
    """Mount every LoRA student of `route`'s base model that a route serves (plus this one) and wait for readiness."""
    from pathlib import Path

    from services.models.cache import ModelCache

    root = Path(settings.artifacts.root).resolve()
    mount = settings.deployment.artifacts_mount.rstrip("/")

    def on_volume(path: str | Path) -> str:
        relative = Path(path).resolve().relative_to(root)
        return f"{mount}/{relative.as_posix()}"

    serving = [r for r in routes if r.base_model == route.base_model and r.student_kind is not None
               and kind_spec(r.student_kind).weights == "adapter"
               and r.candidate and r.phase != "teacher" and r.workload_id != route.workload_id] + [route]
    adapters = {r.candidate: on_volume(Path(str(r.artifact_path)) / "adapter") for r in serving}
    base_path = ModelCache(settings.models).path(str(route.base_model))
    try:
        model_path = on_volume(base_path)
    except ValueError:  # the model cache is not under the artifacts volume: vLLM loads the model by name
        model_path = str(route.base_model)
    applied = deployer.apply(str(route.base_model), model_path, adapters)  # type: ignore[arg-type]  # a student route always names its candidate
    deployer.wait_ready(str(route.base_model), timeout_s=settings.deployment.ready_timeout_s)
    return applied
