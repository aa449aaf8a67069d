"""Alembic: upgrade an empty PostgreSQL database, autogenerate finds nothing, downgrade."""

from __future__ import annotations

import ast
from pathlib import Path

from alembic import command
from sqlalchemy import create_engine, inspect

from jobs.store.db import normalize_url, sqlite_url
from jobs.store.models import Base
from migrations import alembic_config


def _tables(url: str) -> set[str]:
    engine = create_engine(normalize_url(url))
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_check_and_downgrade_on_an_empty_postgres_database(fresh_database):
    url = fresh_database()
    cfg = alembic_config(url)
    assert _tables(url) == set()
    command.upgrade(cfg, "head")
    assert _tables(url) == set(Base.metadata.tables) | {"alembic_version"}
    command.check(cfg)  # raises if the models and the migrations differ
    command.downgrade(cfg, "base")
    assert _tables(url) == {"alembic_version"}


def test_the_same_migrations_build_the_embedded_sqlite_store(tmp_path):
    url = sqlite_url(tmp_path)
    cfg = alembic_config(url)
    command.upgrade(cfg, "head")
    assert _tables(url) >= set(Base.metadata.tables)
    command.check(cfg)


def test_plain_alembic_upgrade_reads_the_store_settings(fresh_database, tmp_path):
    """``alembic upgrade head`` from the repository root migrates ``BILEVEL_DATABASE_URL``."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    url = fresh_database()
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BILEVEL_STATE_DIR")}
    env["BILEVEL_DATABASE_URL"] = url
    env["BILEVEL_STATE_DIR"] = str(tmp_path)  # were the URL ignored, SQLite would land here
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"], cwd=root, env=env, check=True
    )
    assert _tables(url) == set(Base.metadata.tables) | {"alembic_version"}
    assert not (tmp_path / "bilevel.db").exists()


ROOT = Path(__file__).resolve().parents[2]


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The modules ``path`` imports when it loads (its top level; lazy imports inside
    functions and ``TYPE_CHECKING`` blocks do not run then)."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_the_job_domain_never_imports_migrations_nor_alembic():
    for path in (ROOT / "jobs").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                module = node.module if isinstance(node, ast.ImportFrom) else None
                tops = {(module or a.name).split(".")[0] for a in node.names}
                assert not tops & {"migrations", "alembic"}, f"{path}:{node.lineno}"


def test_the_job_domains_modules_import_each_other_without_a_circle():
    files = {_module(p): p for p in (ROOT / "jobs").rglob("*.py")}
    graph = {m: {i for i in _imports(p) if i in files and i != m} for m, p in files.items()}
    done: set[str] = set()

    def visit(m: str, path: tuple[str, ...]) -> None:
        assert m not in path, "import circle: " + " -> ".join((*path[path.index(m) :], m))
        if m not in done:
            for n in sorted(graph[m]):
                visit(n, (*path, m))
            done.add(m)

    for m in sorted(graph):
        visit(m, ())
