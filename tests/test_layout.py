"""The layout the developers' guide asks for, checked on the source: imports point one way,
no import circle, no service module past 400 lines.

Only module-level imports count (not those under ``if TYPE_CHECKING:`` or inside functions,
which run later and on purpose, e.g. the CLI's server commands).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "jobs", "api", "worker", "cli", "migrations", "client")
# package -> the project packages its modules may import at module level
ALLOWED = {
    "core": set(),
    "jobs": set(),
    "migrations": {"jobs"},
    "api": {"jobs"},
    "client": {"jobs", "api"},
    "worker": {"jobs", "core"},
    "cli": {"client", "jobs"},
}
SERVICE = ("jobs", "api", "worker", "cli", "client")
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, name: str, known: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports when it is imported."""
    out: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and not _type_checking(node):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
            elif isinstance(node, ast.Import):
                out.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                out.add(base)
                # `from pkg import mod` imports the submodule pkg.mod
                out.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known)

    visit(ast.parse(path.read_text()).body)
    resolved = set()
    for target in out:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            resolved.add(target)
    return resolved


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    known = _modules()
    return {name: _imports(path, name, known) for name, path in known.items()}


def test_imports_point_one_way(graph):
    wrong = sorted(
        f"{a} imports {b}"
        for a, targets in graph.items()
        for b in targets
        if (pa := a.split(".")[0]) != (pb := b.split(".")[0]) and pb not in ALLOWED[pa]
    )
    assert wrong == []


def test_no_import_circle(graph):
    # Tarjan's strongly connected components: a circle is a component of two or more
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    circles: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    assert circles == []


def test_no_service_module_is_over_400_lines():
    long = {
        str(path.relative_to(ROOT)): n
        for package in SERVICE
        for path in (ROOT / package).rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}
