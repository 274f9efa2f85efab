"""What `docker build .` sends and what the images install: .dockerignore, COPY sources, the wheel's data files."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.deploy.dockerfiles import REPO, Instruction, build_context, dockerignore, ignored, pattern_regex


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


def test_dockerignore_reader_follows_docker_semantics() -> None:
    """The .dockerignore reader follows Docker, not .gitignore: root-anchored patterns, `**/` for depth."""
    rules = [(False, pattern_regex("*.bin")), (False, pattern_regex("**/*.pt")), (False, pattern_regex("var"))]
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
