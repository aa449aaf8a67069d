"""The benchmarks' imports: library benchmarks need torch and ``core`` only, service soaks reach
the test suite through ``tests.support`` alone, and no two benchmark modules import each other.
Read from the source (``ast``), so that an import inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"
MODULES = {
    ".".join(p.relative_to(ROOT).with_suffix("").parts): p
    for p in sorted(BENCHMARKS.rglob("*.py"))
    if p.name != "__init__.py" and "results" not in p.parts
}


# a library benchmark that measures what the service does by default takes the service's own
# rule for it (a pure function), not a copy that could drift: peers' "default" column is
# whatever ``hypergradient.compile: "auto"`` decides, for each cache a compile can find
SERVICE_RULES = {
    "benchmarks.library.peers": {
        "worker.compile_choice",
        "worker.compile_choice.choose",
        "worker.compile_choice.CACHES",
        "worker.compile_choice.Prior",
        "worker.compile_choice.BACKGROUND",
        "worker.compile_choice.spare_core",
    }
}


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, as dotted names (``from a import b`` gives ``a.b``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_the_benchmarks_are_split_into_library_and_service():
    assert MODULES, BENCHMARKS
    outside = [m for m in MODULES if m.split(".")[1] not in ("library", "service")]
    assert outside == []


@pytest.mark.parametrize("module", [m for m in MODULES if m.startswith("benchmarks.library.")])
def test_a_library_benchmark_imports_no_service_package(module):
    # experiments: the one-shot benchmark runs the paper's experiment, a core-only package
    banned = ("api", "jobs", "worker", "cli", "migrations", "tests", "benchmarks.service")
    bad = sorted(
        n
        for n in _imports(MODULES[module]) - SERVICE_RULES.get(module, set())
        if any(n == b or n.startswith(f"{b}.") for b in banned)
    )
    assert bad == [], module


@pytest.mark.parametrize("module", list(MODULES))
def test_a_benchmark_takes_test_helpers_from_tests_support_only(module):
    bad = sorted(
        n
        for n in _imports(MODULES[module])
        if (n == "tests" or n.startswith("tests.")) and not n.startswith("tests.support")
    )
    assert bad == [], module


def test_no_benchmark_module_imports_one_that_imports_it():
    graph = {m: {n for n in _imports(p) if n in MODULES} for m, p in MODULES.items()}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for n in graph[start] - seen:
            seen.add(n)
            if n == goal or reaches(n, goal, seen):
                return True
        return False

    assert [m for m in graph if reaches(m, m, set())] == []
