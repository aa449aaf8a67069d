"""A job's convergence trace: one narrow row per iteration, and its rollup per 64.

``trace_points`` is narrow on purpose: one row per (job, iteration) with a float column per
record key, so a dashboard poll is an index range scan; ``trace_blocks`` rolls it up per 64
iterations (each field's extremes and where they are) so that downsampling a long trace
reads n/64 rows.
"""

from __future__ import annotations

import uuid

from sqlalchemy import Column, Double, ForeignKey, Integer, Table, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from jobs.store.base import Base

__all__ = ["TRACE_BLOCK", "TRACE_FIELDS", "TracePoint", "trace_blocks"]

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
