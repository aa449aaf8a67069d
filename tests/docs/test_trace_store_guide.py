"""The trace-store guide's online partitioning, run as written on a store holding traces."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
from alembic import command
from sqlalchemy import text

from jobs import parse_spec
from jobs.store import repo
from jobs.store.db import make_engine, make_session_factory
from migrations import alembic_config
from tests.factories import team_with_key, tiny_spec

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guides" / "trace-store.md"
_ROWS = "SELECT job_id, iteration, outer_loss FROM trace_points ORDER BY 1, 2"


def _steps() -> dict[str, str]:
    """The guide's SQL block, by its numbered steps (``-- 1.`` ..)."""
    sql = GUIDE.read_text().split("```sql\n", 1)[1].split("```", 1)[0]
    parts = re.split(r"^-- (\d)\..*$", sql, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def test_the_online_conversion_keeps_every_row_and_the_writes_made_meanwhile(fresh_database):
    url = fresh_database()
    # jobs made by this release's code at head, then the store at 0015 (the previous head):
    # the models name columns that later migrations add (jobs.request_sha256, 0019)
    command.upgrade(alembic_config(url), "head")
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    team_id, _ = team_with_key(sessions)
    with sessions.begin() as s:
        ids = [repo.create_job(s, team_id, parse_spec(tiny_spec()))[0].id for _ in range(5)]
    command.downgrade(alembic_config(url), "0015")
    with sessions.begin() as s:
        for k, j in enumerate(ids):
            repo.write_trace(
                s, j, [{"iteration": i, "outer_loss": k + i / 10} for i in range(1, 51)]
            )
    steps = _steps()
    one = re.search(r"^CREATE TABLE trace_parts.*?;\n", steps["1"], flags=re.M | re.S)
    assert one is not None
    create_parts = "".join(
        one[0].replace("_00", f"_{r:02d}").replace("REMAINDER 0", f"REMAINDER {r}")
        for r in range(16)
    )
    pg = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(pg, autocommit=True) as c:
        c.execute(steps["1"].replace(one[0], create_parts))
        c.execute(steps["2"])
        # the service goes on meanwhile: a job writes, another rewinds
        with sessions.begin() as s:
            repo.write_trace(s, ids[0], [{"iteration": 51, "outer_loss": 9.0}])
            repo.truncate_trace(s, ids[1], 20)
        last = "00000000-0000-0000-0000-000000000000"
        batch = steps["3"].replace("LIMIT 200", "LIMIT 2").replace(":last_id", "%(last)s")
        while True:
            c.execute(batch, {"last": last})
            nxt = c.execute(
                "SELECT id FROM (SELECT id FROM jobs WHERE id > %s ORDER BY id LIMIT 2) AS b"
                " ORDER BY id DESC LIMIT 1", (last,)
            ).fetchone()  # fmt: skip
            if nxt is None:
                break
            last = str(nxt[0])
        with sessions.begin() as s:  # written after its job's batch was copied
            repo.write_trace(s, ids[2], [{"iteration": 51, "outer_loss": 7.0}])
        before = c.execute(_ROWS).fetchall()
        c.execute(steps["4"])
        assert c.execute(_ROWS).fetchall() == before
    command.upgrade(alembic_config(url), "head")  # copies nothing: already partitioned
    with engine.connect() as c:
        kind = c.scalar(text("SELECT relkind FROM pg_class WHERE oid = 'trace_points'::regclass"))
        assert kind == "p" and c.execute(text(_ROWS)).all() == [tuple(r) for r in before]
        assert len(before) == 5 * 50 + 1 + 1 - 30
        c.execute(text(steps["5"]))
        c.commit()
        assert c.scalar(text("SELECT to_regclass('trace_points_unpartitioned')")) is None
    engine.dispose()
