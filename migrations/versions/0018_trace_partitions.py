"""trace store: trace_points hash-partitioned by job, and a record of compacted traces

PostgreSQL: ``trace_points`` becomes a table partitioned ``BY HASH (job_id)`` into
``TRACE_PARTITIONS`` partitions kept in their own schema ``trace_parts`` (storage, not model:
the service's table list and Alembic's comparison see ``trace_points`` alone). By job, not by
time, because every read and write names one job (the page, the ``after=`` poll, the rewind
on requeue, the writer's upsert), so each prunes to one partition and reads one index a
sixteenth the size; a job's points are written over its whole run, so a time key would split
one trace over several partitions, add a column to every row and, without it in the query,
make every read probe every partition. Retention is by the age of a *job's* end, and what it
does is compaction (points go, the job's rollups stay), not a dropped time range: it deletes
one job's index range, which vacuum reclaims per partition.

The rows are copied in this migration's transaction, with writers held out of the old
table (``SHARE ROW EXCLUSIVE``: readers go on, a worker's trace flush waits and retries
within ``store_patience_s``): seconds for a store of a few million points. A larger one is
converted first while the service runs (docs/guides/trace-store.md: new partitioned table,
a trigger mirroring writes, a copy in batches, a swap by rename), after which this migration
sees a partitioned ``trace_points`` and leaves it as it is. Expand-only: the table keeps its
name, columns, primary key and foreign key, so the previous release reads and writes it
unchanged.

``trace_compactions`` (both stores) records each job whose full-resolution points were
compacted into its ``trace_blocks`` rollups: how many points there were and their span, so
the trace endpoint answers the same version (ETag) and says it answers at block resolution.

Revision ID: 0018
Revises: 0015
Create Date: 2026-12-06 01:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# the model's constant (jobs.store.models.traces), repeated: a migration is frozen in time
TRACE_PARTITIONS = 16
_SCHEMA = "trace_parts"
_FIELDS = ("outer_loss", "grad_norm", "lr", "time_s", "exact_norm", "cosine", "rel_error",
           "descent_ratio", "peak_bytes")  # fmt: skip
_COLUMNS = ", ".join(("job_id", "iteration", *_FIELDS))


def _table_sql(name: str, partitioned: bool) -> str:
    """``CREATE TABLE`` of trace_points as 0001 and 0007 made it, partitioned by job or plain."""
    floats = "".join(f", {f} double precision" for f in _FIELDS)
    return (
        f"CREATE TABLE {name} (job_id uuid NOT NULL, iteration integer NOT NULL{floats},"
        " CONSTRAINT pk_trace_points PRIMARY KEY (job_id, iteration),"
        " CONSTRAINT fk_trace_points_job_id_jobs FOREIGN KEY (job_id) REFERENCES jobs (id)"
        " ON DELETE CASCADE)" + (" PARTITION BY HASH (job_id)" if partitioned else "")
    )


def _is_partitioned(bind: sa.Connection) -> bool:
    kind = bind.scalar(sa.text("SELECT relkind FROM pg_class WHERE oid = 'trace_points'::regclass"))
    return kind == "p"


def _swap(partitioned: bool) -> None:
    """Copy trace_points into a new table (partitioned or plain) that takes its name."""
    op.execute("LOCK TABLE trace_points IN SHARE ROW EXCLUSIVE MODE")
    op.execute("ALTER TABLE trace_points RENAME TO trace_points_old")
    for c in ("pk_trace_points", "fk_trace_points_job_id_jobs"):
        op.execute(f"ALTER TABLE trace_points_old RENAME CONSTRAINT {c} TO old_{c}")
    op.execute(_table_sql("trace_points", partitioned))
    if partitioned:
        op.execute(f"CREATE SCHEMA IF NOT EXISTS {_SCHEMA}")
        for r in range(TRACE_PARTITIONS):
            op.execute(
                f"CREATE TABLE {_SCHEMA}.trace_points_{r:02d} PARTITION OF trace_points"
                f" FOR VALUES WITH (MODULUS {TRACE_PARTITIONS}, REMAINDER {r})"
            )
    op.execute(f"INSERT INTO trace_points ({_COLUMNS}) SELECT {_COLUMNS} FROM trace_points_old")
    op.execute("DROP TABLE trace_points_old")
    if not partitioned:
        op.execute(f"DROP SCHEMA IF EXISTS {_SCHEMA} CASCADE")


def upgrade() -> None:
    op.create_table(
        "trace_compactions",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("first_iteration", sa.Integer(), nullable=False),
        sa.Column("last_iteration", sa.Integer(), nullable=False),
        sa.Column("compacted_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
            name=op.f("fk_trace_compactions_job_id_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_trace_compactions")),
    )
    bind = op.get_bind()
    if bind.dialect.name == "postgresql" and not _is_partitioned(bind):
        _swap(partitioned=True)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql" and _is_partitioned(bind):
        _swap(partitioned=False)
    op.drop_table("trace_compactions")
