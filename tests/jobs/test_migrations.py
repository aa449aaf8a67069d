"""Alembic: upgrade an empty PostgreSQL database, autogenerate finds nothing, downgrade."""

from __future__ import annotations

import ast
from pathlib import Path

from alembic import command

from jobs.store.db import sqlite_url
from jobs.store.models import Base
from migrations import alembic_config
from tests.factories import table_names


def test_upgrade_check_and_downgrade_on_an_empty_postgres_database(fresh_database):
    url = fresh_database()
    cfg = alembic_config(url)
    assert table_names(url) == set()
    command.upgrade(cfg, "head")
    assert table_names(url) == set(Base.metadata.tables) | {"alembic_version"}
    command.check(cfg)  # raises if the models and the migrations differ
    command.downgrade(cfg, "base")
    assert table_names(url) == {"alembic_version"}


def test_the_same_migrations_build_the_embedded_sqlite_store(tmp_path):
    url = sqlite_url(tmp_path)
    cfg = alembic_config(url)
    command.upgrade(cfg, "head")
    assert table_names(url) >= set(Base.metadata.tables)
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
    assert table_names(url) == set(Base.metadata.tables) | {"alembic_version"}
    assert not (tmp_path / "bilevel.db").exists()


ROOT = Path(__file__).resolve().parents[2]


def test_the_job_domain_never_imports_migrations_nor_alembic():
    """Not even lazily, inside a function (``tests/test_layout.py`` checks module level)."""
    for path in (ROOT / "jobs").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                module = node.module if isinstance(node, ast.ImportFrom) else None
                tops = {(module or a.name).split(".")[0] for a in node.names}
                assert not tops & {"migrations", "alembic"}, f"{path}:{node.lineno}"
