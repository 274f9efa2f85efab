"""The compose stack (docker/compose.yaml): compose-spec schema, dclint, health checks, pins, secrets, and
the compose config loaded with our Settings exactly as each container gets it."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import click
import pytest

from services.domain.settings import Settings, load_settings
from tests.deploy.dockerfiles import (
    COMPOSE,
    COMPOSE_GPU,
    COMPOSE_SCHEMA,
    DCLINT_DIR,
    DOCKER,
    FLYWHEEL_IMAGES,
    INTERPOLATION,
    REPO,
    check_cli_args,
    env_example,
    interpolate,
    load_compose,
)


def _schema() -> dict[str, Any]:
    if not COMPOSE_SCHEMA.exists():
        pytest.fail(f"the compose-spec schema is missing at {COMPOSE_SCHEMA.relative_to(REPO)}: "
                    "`npm install --prefix .tools/dclint dclint@3.1.0` (scripts/setup.sh)")
    return json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", [COMPOSE, COMPOSE_GPU], ids=lambda p: p.name)
def test_compose_files_match_the_compose_spec_schema(path: Path) -> None:
    import jsonschema

    errors = sorted(jsonschema.Draft7Validator(_schema()).iter_errors(load_compose(path)), key=str)
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:10])


def test_the_schema_check_catches_a_wrong_key() -> None:
    import jsonschema

    broken = load_compose()
    broken["services"]["api"]["healthcheck"]["intervall"] = "5s"
    assert list(jsonschema.Draft7Validator(_schema()).iter_errors(broken))


def test_dclint_finds_no_errors() -> None:
    dclint = DCLINT_DIR / ".bin" / "dclint"
    if not dclint.exists():
        pytest.fail("dclint is not installed: `npm install --prefix .tools/dclint dclint@3.1.0` (scripts/setup.sh)")
    # no-build-and-image is dclint's opinion, not the spec's: `image` names what `build` produces,
    # so the services that share an image build it once under one tag.
    result = subprocess.run([str(dclint), str(COMPOSE), str(COMPOSE_GPU), "-q", "--color=false",
                             "--disable-rule=no-build-and-image"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_stack_has_every_part() -> None:
    services = load_compose()["services"]
    assert {"redis", "postgres", "opensearch", "mlflow", "api", "gateway", "beat", "customizer", "models",
            "worker-datastore", "worker-evaluator", "worker-deployment", "worker-orchestrator"} <= set(services)
    commands = {name: s.get("command") for name, s in services.items()}
    assert commands["beat"][0] == "beat" and "replicas" not in services["beat"].get("deploy", {})
    worker_queues = {c[1] for c in commands.values() if c and c[0] == "worker"}
    assert worker_queues == {"datastore", "evaluator", "deployment", "orchestrator", "customizer"}


def test_every_long_running_service_is_health_checked_and_waited_for() -> None:
    services = load_compose()["services"]
    healthy = set()
    for name, service in services.items():
        check = service.get("healthcheck")
        image = service["image"].split(":")[0]
        if name in ("models",):
            assert service.get("restart") == "no"  # a one-shot job, waited on for completion
        elif name == "beat":
            assert check == {"disable": True}  # no HTTP, no control ping: documented in compose.yaml
        elif image in FLYWHEEL_IMAGES and "worker" in (service.get("command") or [""])[0]:
            assert check is None  # inherits the image's Celery ping
            healthy.add(name)
        else:
            assert check and check.get("test"), f"{name}: no healthcheck"
            healthy.add(name)
    for name, service in services.items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            wanted = "service_completed_successfully" if dependency == "models" else "service_healthy"
            assert condition == {"condition": wanted}, f"{name} -> {dependency}: {condition}"
            assert wanted != "service_healthy" or dependency in healthy


def test_images_volumes_and_ports() -> None:
    compose = load_compose()
    services = compose["services"]
    assert {"artifacts", "models", "postgres-data"} <= set(compose["volumes"])
    for name, service in services.items():
        image = service["image"]
        repo_part, _, tag = image.partition(":")
        assert tag and tag != "latest", f"{name}: image {image} is not pinned"
        if repo_part not in FLYWHEEL_IMAGES:
            # a full release: x.y.z, or x.y where that is the whole version (PostgreSQL)
            assert re.match(r"\d+\.\d+(\.\d+)?(-|$)", tag), f"{name}: {image} is not pinned to a release"
            continue
        assert service["build"]["context"] == ".."
        assert (DOCKER / Path(service["build"]["dockerfile"]).name).exists()
        assert repo_part == "flywheel-" + Path(service["build"]["dockerfile"]).name.removesuffix(".Dockerfile")
        mounts = {m["target"] if isinstance(m, dict) else m.split(":")[1] for m in service.get("volumes", [])}
        if name != "mlflow":
            assert "/etc/flywheel/config.yaml" in mounts, f"{name}: the config is not mounted"
            assert service["environment"]["FLYWHEEL_CONFIG"] == "/etc/flywheel/config.yaml"
        if name in ("gateway", "customizer", "models") or name.startswith("worker-"):
            assert "/var/lib/flywheel/models" in mounts, f"{name}: no models volume"
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name}: {port} is published beyond localhost"


def test_secrets_come_from_the_uncommitted_env_file() -> None:
    text = COMPOSE.read_text(encoding="utf-8") + COMPOSE_GPU.read_text(encoding="utf-8")
    used = set(INTERPOLATION.findall(text))
    required = {name for name, op, _ in used if op.endswith("?")}
    documented = set(env_example())
    assert required <= documented, f"required but not in .env.example: {sorted(required - documented)}"
    for key in ("password", "token", "api_key"):
        literal = re.findall(rf"(?i){key}\w*:\s*[\"']?(?!\$\{{)[A-Za-z0-9]", text)
        assert not literal, f"a literal secret in compose: {literal}"
    tracked = subprocess.run(["git", "ls-files", "docker/.env", ".env"], cwd=REPO, capture_output=True, text=True)
    assert tracked.stdout.strip() == "", "an .env file is committed"
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD"):
        interpolate(load_compose()["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"], {})


def _service_environment(service: dict[str, Any]) -> dict[str, str]:
    env = env_example()
    return {key: interpolate(str(value), env) for key, value in (service.get("environment") or {}).items()}


@pytest.mark.parametrize("service_name", ["api", "gateway", "beat", "worker-datastore", "customizer", "models"])
def test_each_container_loads_the_compose_config(service_name: str, monkeypatch: pytest.MonkeyPatch,
                                                  isolated_env: None) -> None:
    """config.compose.yaml with exactly the environment compose gives that container."""
    service = load_compose()["services"][service_name]
    for key, value in _service_environment(service).items():
        monkeypatch.setenv(key, value)
    assert os.environ["FLYWHEEL_CONFIG"] == "/etc/flywheel/config.yaml"
    settings = load_settings(DOCKER / "config.compose.yaml", required=True)
    assert isinstance(settings, Settings)
    assert settings.queue.backend == "redis" and settings.queue.broker_url == "redis://redis:6379/0"
    assert settings.log_store.backend == "opensearch" and settings.log_store.url == "http://opensearch:9200"
    assert settings.job_store.url == "postgresql+psycopg://flywheel@postgres:5432/flywheel"  # password: PGPASSWORD
    assert settings.tracking.tracking_uri == "http://mlflow:5000"
    assert settings.models.cache_dir == Path("/var/lib/flywheel/models")
    assert settings.artifacts.root == Path("/var/lib/flywheel/artifacts")
    assert (settings.api.host, settings.api.port, settings.gateway.host, settings.gateway.port) == (
        "0.0.0.0", 8000, "0.0.0.0", 8001)
    assert settings.teacher.base_url == env_example()["TEACHER_BASE_URL"]
    assert settings.teacher.api_key is not None
    assert settings.api.auth.enabled is (service_name == "api")
    if service_name == "api":
        token = settings.api.auth.tokens[0]
        assert token.token.get_secret_value() == env_example()["FLYWHEEL_API_TOKEN"]
        assert "write" in token.scopes


def test_the_mlflow_server_command_parses() -> None:
    from mlflow.cli import cli as mlflow_cli

    service = load_compose()["services"]["mlflow"]
    assert service["entrypoint"] == ["mlflow"]
    args = service["command"]
    server = mlflow_cli.get_command(click.Context(mlflow_cli), args[0])
    assert server is not None
    ctx = server.make_context("server", args[1:])
    assert ctx.params["backend_store_uri"].startswith("postgresql+psycopg://flywheel@postgres:5432/mlflow")
    assert ctx.params["serve_artifacts"] is True


def test_compose_commands_are_real_flywheel_commands() -> None:
    for service in load_compose()["services"].values():
        if service["image"].split(":")[0] in FLYWHEEL_IMAGES and "entrypoint" not in service:
            check_cli_args(service["command"])
