"""Every state is one enum (``jobs.status``): its strings are written there and nowhere else
in the service's Python, and the enum is what the database's CHECK constraint lists, in the
models and in the migrated store alike. (The OpenAPI side: ``tests/api/test_openapi.py``.)"""

from __future__ import annotations

import ast
import re
from enum import StrEnum
from pathlib import Path

import pytest
from sqlalchemy import CheckConstraint, create_engine, inspect

from jobs.status import AuditAction, DeliveryStatus, JobStatus, KeyScope, QueueKind
from jobs.store.base import check_in
from jobs.store.db import normalize_url, sqlite_url
from jobs.store.models import Base
from migrations import upgrade

ROOT = Path(__file__).resolve().parents[2]
SERVICE = ("jobs", "api", "worker", "cli")
DEFINITIONS = "jobs/status.py"
STATES: tuple[type[StrEnum], ...] = (JobStatus, KeyScope, QueueKind, DeliveryStatus, AuditAction)

#: (table, column, enum): each state column and the enum its CHECK constraint lists.
CHECKED = (
    ("jobs", "status", JobStatus),
    ("jobs", "queue", QueueKind),
    ("workers", "queue", QueueKind),
    ("api_keys", "scope", KeyScope),
    ("webhook_deliveries", "status", DeliveryStatus),
    ("audit_events", "action", AuditAction),
)

#: Literals that spell a state's string but mean something else: (file, string) -> what.
NOT_STATES = {
    ("api/routes/metrics.py", "team"): "a metric's label, the team's name",
    ("cli/audit.py", "team"): "a column header",
    ("cli/audit.py", "operator"): "the store's operator shown as the acting key (no key)",
    ("api/settings.py", "operator"): "a metrics access mode (a Literal: settings parse it)",
    ("cli/pool.py", "team"): "a column header",
    ("cli/keys.py", "team"): "a column header",
    ("worker/build.py", "cpu"): "a torch device",
    ("worker/auto_compiled.py", "cpu"): "a torch device",
    ("worker/auto_compiled.py", "running"): "the summary's background compile, not a job",
}


def _values(node: ast.AST) -> set[int]:
    """The ids of the string constants in ``node`` that are not values: docstrings, the keys
    of a dict display and of a subscript (a field named after a state: ``counts["queued"]``),
    and the text pieces of an f-string."""
    skip: set[int] = set()
    for n in ast.walk(node):
        body = getattr(n, "body", None)
        if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = body[0] if body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                skip.add(id(first.value))
        elif isinstance(n, ast.Dict):
            skip.update(id(k) for k in n.keys if k is not None)
        elif isinstance(n, ast.Subscript):
            skip.add(id(n.slice))
        elif isinstance(n, ast.JoinedStr):
            skip.update(id(v) for v in n.values if isinstance(v, ast.Constant))
    return skip


def _hits(tree: ast.AST, values: set[str]) -> list[ast.Constant]:
    """The string constants of ``tree`` that are one of ``values`` used as a value."""
    skip = _values(tree)
    return [n for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and n.value in values and id(n) not in skip]  # fmt: skip


def _state_literals() -> list[tuple[str, int, str]]:
    """``(file, line, string)`` of every string constant in the service's Python that is a
    state's value, outside the enums' module."""
    values = {m.value for enum in STATES for m in enum}
    found = []
    for package in SERVICE:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel != DEFINITIONS:
                tree = ast.parse(path.read_text(), rel)
                found += [(rel, n.lineno, n.value) for n in _hits(tree, values)]
    return found


def test_each_state_string_is_written_once_in_its_enum():
    found = _state_literals()
    stray = [f"{f}:{line}: {s!r}" for f, line, s in found if (f, s) not in NOT_STATES]
    assert stray == [], "spell these with their enum (jobs.status): " + ", ".join(stray)
    # an exception that no longer occurs goes from the list
    assert {(f, s) for f, _, s in found} >= set(NOT_STATES)


def test_the_scan_finds_a_state_written_as_a_plain_string():
    """The scan's own check: a comparison with a bare string is found, a docstring, a dict
    key, a subscript and an f-string's text are not."""
    src = '"""queued"""\nx = job.status == "queued"\ny = {"queued": 1}["running"]\nz = f"cpu{n}"\n'
    assert [n.value for n in _hits(ast.parse(src), {"queued", "running", "cpu"})] == ["queued"]


@pytest.mark.parametrize(
    ("table", "column", "enum"), CHECKED, ids=[f"{t}.{c}" for t, c, _ in CHECKED]
)
def test_each_state_columns_check_constraint_is_its_enum(table, column, enum):
    (check,) = [
        c
        for c in Base.metadata.tables[table].constraints
        if isinstance(c, CheckConstraint) and c.name == f"ck_{table}_{column}"
    ]
    assert str(check.sqltext) == check_in(column, tuple(enum))
    assert (
        check_in(column, tuple(enum)) == f"{column} IN ({', '.join(repr(m.value) for m in enum)})"
    )


def _migrated_checks(url: str) -> dict[tuple[str, str], set[str]]:
    """The values each migrated state column's CHECK constraint lists."""
    engine = create_engine(normalize_url(url))
    try:
        insp = inspect(engine)
        out = {}
        for table, column, _ in CHECKED:
            (check,) = [c for c in insp.get_check_constraints(table)
                        if c["name"] == f"ck_{table}_{column}"]  # fmt: skip
            out[table, column] = set(re.findall(r"'([^']*)'", check["sqltext"]))
        return out
    finally:
        engine.dispose()


def test_the_migrated_postgres_store_checks_each_state_column_against_its_enum(fresh_database):
    url = fresh_database()
    upgrade(url)
    assert _migrated_checks(url) == {(t, c): {m.value for m in e} for t, c, e in CHECKED}


def test_the_migrated_sqlite_store_checks_each_state_column_against_its_enum(tmp_path):
    # SQLite adds a constraint by copying the table: the copies keep the earlier ones
    url = sqlite_url(tmp_path)
    upgrade(url)
    assert _migrated_checks(url) == {(t, c): {m.value for m in e} for t, c, e in CHECKED}
