"""The module import graph of a source tree, read from the AST, and its cycles.

Every import counts, at module level or inside a function: a lazy import defers loading, not the
dependency, and a cycle through one still means neither module can be understood (or moved) alone.
`import a.b` and `from a import b` point at the module `a.b` when it is in the tree, else at `a`;
the parents' `__init__` modules are not added (they hold no code here). Relative imports resolve
against the importing module's package. Imports of names outside the tree are ignored.

The files are parsed in a child process (`import_statements`): CPython 3.11 keeps the parser's recursion
counter in state shared by all threads (gh-106905), and 3.11 parses source lines to underline tracebacks,
so a parse here beside any thread formatting a traceback (a Celery client retrying a stopped Redis in an
earlier test) failed once in CI with "SystemError: AST constructor recursion depth mismatch".
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

_PARSE = """
import ast, json, sys
out = {}
for path in json.load(sys.stdin):
    found = []
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.append([False, None, [a.name for a in node.names], 0])
        elif isinstance(node, ast.ImportFrom):
            found.append([True, node.module, [a.name for a in node.names], node.level])
    out[path] = found
json.dump(out, sys.stdout)
"""


class ImportStatement(NamedTuple):
    is_from: bool  # `from module import names` (else `import names`)
    module: str | None
    names: list[str]
    level: int  # leading dots of a relative `from` import


def import_statements(paths: Sequence[Path]) -> dict[Path, list[ImportStatement]]:
    """Every import statement of each file (module level or nested), parsed in one child process."""
    done = subprocess.run([sys.executable, "-c", _PARSE], input=json.dumps([str(p) for p in paths]),
                          capture_output=True, text=True, check=True)
    parsed = json.loads(done.stdout)
    return {Path(path): [ImportStatement(*statement) for statement in statements] for path, statements in parsed.items()}


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules_under(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Module name -> file for every `.py` file under `root/<package>` for each package."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            found[module_name(root, path)] = path
    return found


def _targets(node: ImportStatement, importer: str, is_package: bool) -> list[str]:
    if not node.is_from:
        return list(node.names)
    base = node.module or ""
    if node.level:
        package = importer.split(".") if is_package else importer.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, base] if base else package)
    return [f"{base}.{name}" if base else name for name in node.names] + [base]


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules of the tree it imports (anywhere in its body)."""
    graph: dict[str, set[str]] = {}
    statements = import_statements(list(modules.values()))
    for name, path in modules.items():
        edges: set[str] = set()
        for node in statements[path]:
            targets = _targets(node, name, path.name == "__init__.py")
            if node.is_from:
                base = targets.pop()
                # `from pkg import mod` names the submodule; `from mod import func` names the module.
                hits = [t for t in targets if t in modules]
                edges.update(hits if hits else [base] if base in modules else [])
            else:
                edges.update(_nearest(t, modules) for t in targets if _nearest(t, modules))
        # `from pkg import name` inside pkg/__init__.py names pkg itself: a re-export, not a cycle.
        graph[name] = edges - {name}
    return graph


def _nearest(target: str, modules: dict[str, Path]) -> str:
    parts = target.split(".")
    while parts and ".".join(parts) not in modules:
        parts.pop()
    return ".".join(parts)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted, largest first."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(start: str) -> None:
        nonlocal counter
        # Iterative: a deep import chain must not hit the recursion limit.
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found, key=lambda c: (-len(c), c))
