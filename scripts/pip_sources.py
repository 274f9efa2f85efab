"""Stage the host's pip package sources for an image build (the `pip-sources` build context).

    python3 scripts/pip_sources.py STAGING_DIR < <(python3 -m pip config list)

Reads `pip config list` (every scope, environment variables included) and writes into STAGING_DIR
a pip.conf that points, inside the build, at the same sources under /run/pip-sources: the CA
bundle (copied: a few hundred kB), find-links directories and file:// indexes. Directories are not
copied: each is printed as `MOUNT <host dir> <name>` for the caller to bind-mount read-only at
STAGING_DIR/<name>. http(s) indexes and find-links stay as they are. `constraint` is left out: the
Dockerfiles pin with requirements/constraints.txt. Standard library only (runs before any venv).
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

MOUNTED_AT = "/run/pip-sources"  # the Dockerfiles' mount target of the pip-sources stage
# pip's precedence, lowest first: a key set in a later scope wins (`:env:` is PIP_* variables).
SCOPES = ("global", "user", "site", ":env:")
KEPT = ("index-url", "extra-index-url", "find-links", "trusted-host", "cert", "timeout", "default-timeout",
        "retries", "proxy")
LINE = re.compile(r"^(?P<scope>[^.]*)\.(?P<key>[\w-]+)='(?P<value>.*)'$")


def read_config(text: str) -> dict[str, str]:
    """`pip config list` output -> {key: value}, the value of the highest-precedence scope."""
    found: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        match = LINE.match(line.strip())
        if match and match["key"] in KEPT:
            found.setdefault(match["key"], {})[match["scope"]] = match["value"]
    return {key: by_scope[max(by_scope, key=lambda s: SCOPES.index(s) if s in SCOPES else 0)]
            for key, by_scope in found.items()}


class Stager:
    def __init__(self, staging: Path) -> None:
        self.staging = staging
        self.mounts: list[tuple[Path, str]] = []

    def directory(self, host_dir: Path) -> str:
        """A host directory, mounted at STAGING/<name>; its path inside the build."""
        if not host_dir.is_dir():
            raise SystemExit(f"pip_sources: pip is configured with {host_dir}, which is not a directory: "
                             "fix the pip configuration (`pip config list`)")
        for mounted, name in self.mounts:
            if mounted == host_dir:
                return f"{MOUNTED_AT}/{name}"
        name = f"source-{len(self.mounts)}"
        self.mounts.append((host_dir, name))
        return f"{MOUNTED_AT}/{name}"

    def location(self, value: str, *, index: bool) -> str:
        """A find-links entry or index URL as the build sees it (local ones mounted)."""
        parsed = urlparse(value)
        if parsed.scheme in ("http", "https"):
            return value
        path = Path(unquote(parsed.path) if parsed.scheme == "file" else value)
        if not path.exists():
            raise SystemExit(f"pip_sources: pip is configured with {value}, which does not exist here: "
                             "fix the pip configuration (`pip config list`)")
        if index or path.name == "simple":
            # A simple index links to its files relative to itself (../../files/x.whl): mount the folder above it.
            return f"file://{self.directory(path.parent)}/{path.name}"
        return self.directory(path) if path.is_dir() else f"{self.directory(path.parent)}/{path.name}"


def stage(config: dict[str, str], staging: Path) -> Stager:
    stager = Stager(staging)
    lines = ["# Written by scripts/pip_sources.py from the host's pip configuration; build time only.", "[global]"]
    for key, value in config.items():
        if key == "cert":
            shutil.copyfile(value, staging / "ca.crt")
            value = f"{MOUNTED_AT}/ca.crt"
        elif key in ("index-url", "extra-index-url", "find-links"):
            value = " ".join(stager.location(v, index=key != "find-links") for v in value.split())
        lines.append(f"{key} = {value}")
    (staging / "pip.conf").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return stager


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    staging = Path(argv[1])
    staging.mkdir(parents=True, exist_ok=True)
    stager = stage(read_config(sys.stdin.read()), staging)
    for host_dir, name in stager.mounts:
        print(f"MOUNT {host_dir} {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
