"""The Kubernetes deployment manager against the `kmock` API emulator (no real cluster can run here):
vLLM Deployment + Service per base model, every promoted LoRA adapter mounted from one registry,
readiness waited for (set by the test: the emulator runs no controllers), clean-up."""

from __future__ import annotations

import threading
import time

import pytest
from kubernetes import client

from services.deployment.backends.kubernetes import KubernetesDeployer, VllmSpec, k8s_name
from services.domain.errors import ExternalServiceError
from tests.factories import promotion_decision
from tests.kube import kube_emulator


def test_deployment_per_base_model_with_one_adapter_registry() -> None:
    with kube_emulator() as api:
        deployer = KubernetesDeployer(api, VllmSpec(namespace="flywheel", replicas=2, gpus=1))
        apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
        first = deployer.apply("smollm2-135m-instruct", "/artifacts/models/smollm2",
                               {"news-lora": "/artifacts/students/news-lora/a1"})
        name = k8s_name("smollm2-135m-instruct")
        deployment = apps.read_namespaced_deployment(name, "flywheel")
        container = deployment.spec.template.spec.containers[0]
        assert container.args[container.args.index("--lora-modules") + 1] == "news-lora=/artifacts/students/news-lora/a1"
        assert "--enable-lora" in container.args and container.resources.limits["nvidia.com/gpu"] == "1"
        assert deployment.spec.replicas == 2
        assert deployment.spec.template.metadata.annotations["flywheel.dev/adapter-set"] == first["adapter_set_sha256"]
        assert core.read_namespaced_service(name, "flywheel").spec.ports[0].port == 8000

        # A second student of the same base joins the SAME deployment; the template hash changes, so
        # every replica rolls to the new set (none keeps serving a stale one).
        second = deployer.apply("smollm2-135m-instruct", "/artifacts/models/smollm2", {
            "news-lora": "/artifacts/students/news-lora/a1", "filings-lora": "/artifacts/students/filings-lora/b2"})
        deployment = apps.read_namespaced_deployment(name, "flywheel")
        args = deployment.spec.template.spec.containers[0].args
        assert args[args.index("--lora-modules") + 1:] == ["filings-lora=/artifacts/students/filings-lora/b2",
                                                           "news-lora=/artifacts/students/news-lora/a1"]
        assert deployment.spec.template.metadata.annotations["flywheel.dev/adapter-set"] == second["adapter_set_sha256"]
        assert second["adapter_set_sha256"] != first["adapter_set_sha256"]
        registry = core.read_namespaced_config_map(f"{name}-adapters", "flywheel")
        assert registry.data["sha256"] == second["adapter_set_sha256"]
        assert len(apps.list_namespaced_deployment("flywheel").items) == 1

        with pytest.raises(ExternalServiceError, match="not ready"):
            deployer.wait_ready("smollm2-135m-instruct", timeout_s=0.3, poll_s=0.05)

        def become_ready() -> None:
            time.sleep(0.3)
            apps.patch_namespaced_deployment_status(name, "flywheel", {"status": {"replicas": 2, "readyReplicas": 2}})

        threading.Thread(target=become_ready).start()
        deployer.wait_ready("smollm2-135m-instruct", timeout_s=10, poll_s=0.05)
        assert deployer.endpoint("smollm2-135m-instruct") == f"http://{name}.flywheel.svc:8000/v1"

        deployer.delete("smollm2-135m-instruct")
        deployer.delete("smollm2-135m-instruct")  # idempotent
        assert apps.list_namespaced_deployment("flywheel").items == []
        assert core.list_namespaced_service("flywheel").items == []
        assert core.list_namespaced_config_map("flywheel").items == []


def test_a_promoted_lora_student_is_rolled_out_before_its_route_switches(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pathlib import Path

    from services.customizer.service import train_candidate
    from services.deployment.backends.kubernetes import roll_out, spec_from
    from services.deployment.rollout import deploy
    from services.deployment.routes import RouteStore
    from services.domain.settings import Settings
    from tests.model_plane import model_plane

    plane = model_plane(tmp_path, records=120, max_steps=2)
    settings = Settings.model_validate({**plane.settings.model_dump(), "deployment": {
        "backend": "kubernetes", "namespace": "flywheel", "ready_timeout_s": 10}})
    artifact = train_candidate(settings, "tiny-lora", plane.dataset.dataset_id)
    routes = RouteStore(settings.job_store.url)
    with kube_emulator() as api:
        deployer = KubernetesDeployer(api, spec_from(settings))
        apps = client.AppsV1Api(api)
        name = k8s_name("tiny-lm")
        seen_before_switch = []

        def prepare(route):  # type: ignore[no-untyped-def]
            seen_before_switch.append(routes.get(route.workload_id, fresh=True).phase)
            threading.Thread(target=lambda: (time.sleep(0.3), apps.patch_namespaced_deployment_status(
                name, "flywheel", {"status": {"replicas": 1, "readyReplicas": 1}}))).start()
            return roll_out(settings, deployer, routes.all(), route)

        route = deploy(Path(settings.artifacts.root), routes, promotion_decision("tiny-lora", artifact.artifact_id),
                       job_id=None, prepare=prepare)
        args = apps.read_namespaced_deployment(name, "flywheel").spec.template.spec.containers[0].args
    relative = Path(artifact.path).resolve().relative_to(Path(settings.artifacts.root).resolve())
    assert args[args.index("--lora-modules") + 1] == f"tiny-lora=/artifacts/{relative.as_posix()}/adapter"
    assert seen_before_switch == ["teacher"] and route.phase == "full", "the route switched only once pods were ready"
    assert routes.history("news_topic")[0]["detail"]["adapter_set_sha256"]
