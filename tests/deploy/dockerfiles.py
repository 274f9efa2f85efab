"""Readers for docker/ used by the packaging tests: Dockerfiles, .dockerignore, the compose files.

Small and strict on purpose: each follows the part of the format our files use (BuildKit's
line continuations, Docker's .dockerignore matching, compose's ${VAR} interpolation).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import yaml
from click.testing import CliRunner

from orchestrator.cli.main import cli

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
IMAGES = ("orchestrator", "gateway", "worker", "customizer")
FLYWHEEL_IMAGES = {f"flywheel-{name}" for name in IMAGES}
COMPOSE = DOCKER / "compose.yaml"
COMPOSE_GPU = DOCKER / "compose.gpu.yaml"
# Installed by `npm install --prefix .tools/dclint dclint@3.1.0` (it vendors the compose-spec schema).
DCLINT_DIR = REPO / ".tools" / "dclint" / "node_modules"
COMPOSE_SCHEMA = DCLINT_DIR / "dclint" / "schemas" / "compose.schema.json"


# --- Dockerfiles ---------------------------------------------------------------------------------

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


def check_cli_args(args: list[str]) -> None:
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


# --- .dockerignore (Docker's rules: anchored at the root, `**` crosses folders, last match wins) --

def pattern_regex(pattern: str) -> re.Pattern[str]:
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
        rules.append((negate, pattern_regex(pattern)))
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


INTERPOLATION = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} (what compose.yaml uses)."""
    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if name in env and (env[name] or not (op or "").startswith(":")):
            return env[name]
        if op and op.endswith("?"):
            raise KeyError(f"${{{name}}} is required: {arg}")
        return arg or ""
    return INTERPOLATION.sub(one, value)
