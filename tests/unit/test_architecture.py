"""Dependencies point one way: orchestrator -> services -> services.domain (DESIGN.md, STYLE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

SERVICES = {"datastore", "customizer", "evaluator", "deployment", "models"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _modules(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


def test_domain_imports_no_other_part_of_the_platform() -> None:
    for path in _modules("services/domain"):
        bad = {n for n in _imports(path) if n.startswith("orchestrator") or (
            n.startswith("services.") and not n.startswith("services.domain"))}
        assert not bad, f"{path.relative_to(REPO)} imports {bad}"


def test_services_never_import_the_orchestrator_or_each_other() -> None:
    for service in SERVICES:
        allowed = {f"services.{service}", "services.domain"} | ({"services.models"} if service != "models" else set())
        for path in _modules(f"services/{service}"):
            for name in _imports(path):
                if name.startswith("orchestrator"):
                    raise AssertionError(f"{path.relative_to(REPO)} imports the orchestrator ({name})")
                if name.startswith("services.") and not any(name == a or name.startswith(a + ".") for a in allowed):
                    raise AssertionError(f"{path.relative_to(REPO)} imports another service ({name})")


def test_cli_help_path_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = "import sys, orchestrator.cli.main; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "False"


def test_only_the_web_edge_imports_the_api() -> None:
    """The API is an edge: the dashboard (served by it) and the CLI's `serve api` import it; what both
    show (job views, `orchestrator.workloads`) lives below it."""
    edge = ("orchestrator/api/", "orchestrator/dashboard/", "orchestrator/cli/")
    for path in _modules("orchestrator") + _modules("services"):
        if not str(path.relative_to(REPO)).startswith(edge):
            bad = {n for n in _imports(path) if n.startswith("orchestrator.api")}
            assert not bad, f"{path.relative_to(REPO)} imports the API ({bad})"
