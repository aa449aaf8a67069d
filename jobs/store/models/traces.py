"""A job's convergence trace: one narrow row per iteration, and its rollup per 64.

``trace_points`` is narrow on purpose: one row per (job, iteration) with a float column per
record key, so a dashboard poll is an index range scan; ``trace_blocks`` rolls it up per 64
iterations (each field's extremes and where they are) so that downsampling a long trace
reads n/64 rows.

On PostgreSQL ``trace_points`` is partitioned by hash of ``job_id`` into
``TRACE_PARTITIONS`` tables (schema ``trace_parts``; migration 0018 says why by job and not
by time): every statement here names one job and reads one partition. SQLite keeps a plain
table. A job finished longer ago than the retention (``BILEVEL_TRACE_RETENTION_DAYS``) has
its points *compacted*: deleted, its ``trace_blocks`` kept, and a ``trace_compactions`` row
saying so (``jobs.store.repo.trace_compaction``).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Column, Double, ForeignKey, Integer, Table, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from jobs.store.base import Base, UTCDateTime

__all__ = [
    "TRACE_BLOCK",
    "TRACE_FIELDS",
    "TRACE_PARTITIONS",
    "TraceCompaction",
    "TracePoint",
    "trace_blocks",
]

# PostgreSQL's hash partitions of trace_points (migration 0018 creates them): a few billion
# points a year is ~10^8 rows per partition, each with its own index and vacuum
TRACE_PARTITIONS = 16

# The float columns of a trace point: core.fit's record keys besides `iteration`.
TRACE_FIELDS = (
    "outer_loss",
    "grad_norm",
    "lr",
    "time_s",
    "exact_norm",
    "cosine",
    "rel_error",
    "descent_ratio",
    "peak_bytes",
)


class TracePoint(Base):
    """One hyper-iteration's record; NaN (skipped diagnostics) is stored as NULL."""

    __tablename__ = "trace_points"

    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    iteration: Mapped[int] = mapped_column(Integer, primary_key=True)
    outer_loss: Mapped[float | None] = mapped_column(Double)
    grad_norm: Mapped[float | None] = mapped_column(Double)
    lr: Mapped[float | None] = mapped_column(Double)
    time_s: Mapped[float | None] = mapped_column(Double)
    exact_norm: Mapped[float | None] = mapped_column(Double)
    cosine: Mapped[float | None] = mapped_column(Double)
    rel_error: Mapped[float | None] = mapped_column(Double)
    descent_ratio: Mapped[float | None] = mapped_column(Double)
    # bytes the hypergradient held at its peak (CUDA peak, or saved for backward on CPU)
    peak_bytes: Mapped[float | None] = mapped_column(Double)


# Iterations per row of trace_blocks: block b holds iterations b*64+1 .. (b+1)*64.
TRACE_BLOCK = 64

# A rollup of trace_points kept by the writer: per block of TRACE_BLOCK iterations, each
# field's minimum and maximum and where they are. Downsampling a long trace reads these
# (n / 64 rows) instead of every point.
trace_blocks = Table(
    "trace_blocks",
    Base.metadata,
    Column("job_id", Uuid, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("block", Integer, primary_key=True),
    *[
        Column(f"{field}_{part}", Integer if part.endswith("_it") else Double)
        for field in TRACE_FIELDS
        for part in ("min", "min_it", "max", "max_it")
    ],
)


class TraceCompaction(Base):
    """A job whose full-resolution points were compacted into its trace_blocks.

    ``points`` and the iteration span are the trace's before compaction: the trace endpoint
    keeps answering the same version of it, at block resolution.
    """

    __tablename__ = "trace_compactions"

    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    points: Mapped[int] = mapped_column(Integer)
    first_iteration: Mapped[int] = mapped_column(Integer)
    last_iteration: Mapped[int] = mapped_column(Integer)
    compacted_at: Mapped[datetime] = mapped_column(UTCDateTime)
