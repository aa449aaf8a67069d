"""Migration 0018 on a store holding traces: partitioned and back, every row kept."""

from __future__ import annotations

import uuid

from alembic import command
from sqlalchemy import text

from jobs import parse_spec
from jobs.store import repo
from jobs.store.db import make_engine, make_session_factory
from jobs.store.models import TRACE_PARTITIONS
from migrations import alembic_config
from tests.factories import team_with_key, tiny_spec

_KIND = "SELECT relkind FROM pg_class WHERE oid = 'trace_points'::regclass"
_PARTS = "SELECT count(*) FROM pg_inherits WHERE inhparent = 'trace_points'::regclass"
_ROWS = "SELECT job_id, iteration, outer_loss, grad_norm FROM trace_points ORDER BY 1, 2"


def _store_with_traces(url: str) -> tuple[object, list[uuid.UUID]]:
    """A store at 0015 (the previous head) with three jobs' traces.

    The rows are made by this release's code at head, then the store goes down to 0015:
    the models name columns that later migrations add (jobs.request_sha256, 0019).
    """
    command.upgrade(alembic_config(url), "head")
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    team_id, _ = team_with_key(sessions)
    ids = []
    with sessions.begin() as s:
        for k in range(3):
            job, _ = repo.create_job(s, team_id, parse_spec(tiny_spec()))
            points = [{"iteration": i, "outer_loss": k + 1.0 / i, "grad_norm": float(i)}
                      for i in range(1, 101)]  # fmt: skip
            repo.write_trace(s, job.id, points)
            ids.append(job.id)
    command.downgrade(alembic_config(url), "0015")
    return engine, ids


def test_upgrade_partitions_the_rows_and_downgrade_puts_them_back(fresh_database):
    url = fresh_database()
    engine, ids = _store_with_traces(url)
    with engine.connect() as c:
        assert c.scalar(text(_KIND)) == "r"
        rows = c.execute(text(_ROWS)).all()
    assert len(rows) == 300
    cfg = alembic_config(url)
    command.upgrade(cfg, "head")
    with engine.connect() as c:
        assert c.scalar(text(_KIND)) == "p" and c.scalar(text(_PARTS)) == TRACE_PARTITIONS
        assert c.execute(text(_ROWS)).all() == rows
        assert c.scalar(text("SELECT count(*) FROM trace_compactions")) == 0
    # the writer's upsert and the reads work on the partitioned table
    sessions = make_session_factory(engine)
    with sessions.begin() as s:
        repo.write_trace(s, ids[0], [{"iteration": 101, "outer_loss": 0.5}])
        assert repo.trace_span(s, ids[0], 0) == (101, 1, 101)
        repo.truncate_trace(s, ids[0], 100)
    command.check(cfg)  # the models and the migrations agree
    command.downgrade(cfg, "0015")
    with engine.connect() as c:
        assert c.scalar(text(_KIND)) == "r" and c.scalar(text(_PARTS)) == 0
        assert c.execute(text(_ROWS)).all() == rows
        assert c.scalar(text("SELECT to_regclass('trace_compactions')")) is None
        assert (
            c.scalar(text("SELECT count(*) FROM pg_namespace WHERE nspname = 'trace_parts'")) == 0
        )
    command.upgrade(cfg, "head")  # and up again
    with engine.connect() as c:
        assert c.scalar(text(_KIND)) == "p" and c.execute(text(_ROWS)).all() == rows
    engine.dispose()


def test_a_table_partitioned_beforehand_is_left_as_it_is(fresh_database):
    """The online procedure (docs/guides/trace-store.md) ran first: 0018 copies nothing."""
    url = fresh_database()
    engine, _ = _store_with_traces(url)
    with engine.begin() as c:
        c.execute(text("ALTER TABLE trace_points RENAME TO trace_points_old"))
        c.execute(text(
            "CREATE TABLE trace_points (LIKE trace_points_old INCLUDING ALL)"
            " PARTITION BY HASH (job_id)"
        ))  # fmt: skip
        for r in range(4):
            c.execute(text(f"CREATE TABLE trace_points_{r} PARTITION OF trace_points"
                           f" FOR VALUES WITH (MODULUS 4, REMAINDER {r})"))  # fmt: skip
        c.execute(text("INSERT INTO trace_points SELECT * FROM trace_points_old"))
        c.execute(text("DROP TABLE trace_points_old"))
        rows = c.execute(text(_ROWS)).all()
    command.upgrade(alembic_config(url), "head")
    with engine.connect() as c:
        assert c.scalar(text(_PARTS)) == 4 and c.execute(text(_ROWS)).all() == rows
    engine.dispose()
