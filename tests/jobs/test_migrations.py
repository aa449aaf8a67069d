"""Alembic: upgrade an empty PostgreSQL database, autogenerate finds nothing, downgrade."""

from __future__ import annotations

from alembic import command
from sqlalchemy import create_engine, inspect

from jobs.db import alembic_config, normalize_url, sqlite_url
from jobs.models import Base


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
