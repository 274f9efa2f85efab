"""Dependencies point one way: orchestrator -> services -> services.domain (DESIGN.md, STYLE.md)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from tests.conftest import REPO
from tests.import_graph import cycles, import_graph, import_statements, modules_under

SERVICES = {"datastore", "customizer", "evaluator", "deployment", "models"}


@cache
def _all_statements() -> dict[Path, list]:
    return import_statements(_modules("orchestrator") + _modules("services"))


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in _all_statements()[path]:
        if not node.is_from:
            names.update(node.names)
        elif node.module and node.level == 0:
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


def test_no_import_cycle_in_the_platform() -> None:
    """No module reaches itself through imports, lazy (function-level) ones included (tests/import_graph.py)."""
    found = cycles(import_graph(modules_under(REPO, ["orchestrator", "services"])))
    assert not found, "import cycles (break each by moving the shared part down a layer): " + "; ".join(
        " <-> ".join(c) for c in found)


def _write_package(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_cycle_check_finds_a_planted_cycle(tmp_path: Path) -> None:
    _write_package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg.b import f\n",
        "pkg/b.py": "def f():\n    from . import c\n",  # lazy and relative: still an edge
        "pkg/c.py": "import pkg.a\n",
        "pkg/d.py": "from pkg import a\nimport os\n",  # imports into the cycle, not part of it
        "pkg/sub/__init__.py": "from .e import g\n",  # a re-export from the package's own module
        "pkg/sub/e.py": "from .. import d\ng = 1\n",
    })
    graph = import_graph(modules_under(tmp_path, ["pkg"]))
    assert graph["pkg.b"] == {"pkg.c"} and graph["pkg.sub.e"] == {"pkg.d"} and graph["pkg.sub"] == {"pkg.sub.e"}
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]
    _write_package(tmp_path, {"pkg/c.py": "import os\n"})  # the cycle broken
    assert cycles(import_graph(modules_under(tmp_path, ["pkg"]))) == []


def test_cli_help_path_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = "import sys, orchestrator.cli.main; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "False"


def test_the_gateway_and_its_kind_lookups_do_not_import_torch() -> None:
    """The gateway asks the kind registry what each student serves; kind packages import without torch."""
    import subprocess
    import sys

    code = ("import sys, services.deployment.gateway.app\n"
            "from services.deployment.gateway.routing import serves\n"
            "from services.deployment.routes import Route\n"
            "from services.domain.students import KIND_PACKAGES\n"
            "[serves(Route(workload_id='w', candidate='c', student_kind=k), 'chat') for k in KIND_PACKAGES]\n"
            "print('torch' in sys.modules)")
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
