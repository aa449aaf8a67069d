"""Engines and sessions for PostgreSQL (the service) or SQLite (embedded).

Migrating a store is :func:`migrations.upgrade`'s: the job domain never imports Alembic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

__all__ = ["make_engine", "make_session_factory", "normalize_url", "sqlite_url"]


def normalize_url(url: str) -> str:
    """``postgres://`` and ``postgresql://`` mean psycopg 3 here."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def sqlite_url(state_dir: str | Path) -> str:
    """The embedded mode's database file under ``state_dir``."""
    return f"sqlite:///{Path(state_dir).expanduser().resolve() / 'bilevel.db'}"


def make_engine(
    url: str,
    *,
    pool_size: int = 5,
    max_overflow: int = 10,
    pre_ping: bool = True,
    prepared: bool = True,
) -> Engine:
    """An engine with the settings each backend needs.

    SQLite gets WAL (readers do not block the executor's writes), a busy timeout and foreign
    keys; PostgreSQL gets pre-ping so that a restarted server costs one failed checkout.
    ``pre_ping=False`` saves that round trip on every checkout; a restart then fails the
    one statement that finds its connection dead, and SQLAlchemy invalidates the whole pool
    on that disconnect (the API answers it with a 503 and the next request reconnects).
    A process holds at most ``pool_size + max_overflow`` PostgreSQL connections (the sum
    over every process must fit the server's ``max_connections``: docs/guides/pool-at-scale.md).
    ``prepared=False`` keeps psycopg from preparing statements on the server (PgBouncer
    before 1.21 in transaction mode hands each transaction any server connection).
    """
    url = normalize_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    args = {} if prepared else {"prepare_threshold": None}
    return create_engine(
        url,
        pool_pre_ping=pre_ping,
        pool_size=pool_size,
        max_overflow=max_overflow,
        connect_args=args,
    )


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded attributes after commit (rows are handed to other threads)."""
    return sessionmaker(engine, expire_on_commit=False)
