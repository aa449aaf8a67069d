"""Trace retention: old jobs' full-resolution points compacted into their rollups, and read back.

A job that ended (``jobs.status.TERMINAL``) longer ago than the retention, and is no member
of a search still adding members (its pruner compares new members with the earlier ones'
points), keeps its ``trace_blocks`` (each field's extremes per 64 iterations and where they
are) and loses its ``trace_points``; a ``trace_compactions`` row records the trace's size
and span. The blocks are recomputed from the points in the same transaction that deletes
them, so what is kept is exactly the rollup of what was stored, whatever wrote it (an older
release, a bulk load).

Concurrency: a pass locks the jobs it takes (``FOR NO KEY UPDATE SKIP LOCKED``: two workers'
passes take disjoint jobs, and a trace writer's foreign-key check is not blocked), and a job
already recorded is never taken again, so a pass is idempotent. A reader that saw a trace's
points and then finds none (a compaction committed between its statements) asks again and
is answered from the blocks (:func:`jobs.store.repo.trace_reads.trace_columns`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, delete, exists, func, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from jobs.store.base import utcnow
from jobs.store.models import (
    TRACE_BLOCK,
    TRACE_FIELDS,
    Job,
    Study,
    StudyMember,
    TraceCompaction,
    TracePoint,
    trace_blocks,
)
from jobs.store.models.jobs import COMPACTION_DUE
from jobs.store.repo.trace_writes import block_of, refresh_blocks

__all__ = [
    "CompactionPass",
    "compact_due",
    "compact_job",
    "compacted_columns",
    "compacted_span",
    "compaction_of",
    "due_query",
]

# blocks recomputed per statement: bounds the points held in memory for one long trace
_REFRESH_BLOCKS = 256


def compaction_of(session: Session, job_id: uuid.UUID) -> TraceCompaction | None:
    """The job's compaction record, ``None`` while its points are kept at full resolution."""
    return session.get(TraceCompaction, job_id)


def compact_job(session: Session, job_id: uuid.UUID) -> int:
    """Recompute ``job_id``'s rollups from its points, delete the points, record it.

    In the caller's transaction; the caller holds the job (a terminal job: nothing writes
    its trace any more). Returns the points deleted (0 for a job already compacted).
    """
    # the job's flag marks it for the pass's index; a job an older release compacted (its
    # record without the flag) is marked here and never taken again
    session.execute(update(Job).where(Job.id == job_id).values(trace_compacted=True))
    if compaction_of(session, job_id) is not None:
        return 0
    n, first, last = session.execute(
        select(func.count(), func.min(TracePoint.iteration), func.max(TracePoint.iteration))
        .where(TracePoint.job_id == job_id)
    ).one()  # fmt: skip
    if n:
        step = _REFRESH_BLOCKS * TRACE_BLOCK
        for lo in range(block_of(first) * TRACE_BLOCK + 1, last + 1, step):
            refresh_blocks(session, job_id, lo, min(last, lo + step - 1))
        session.execute(delete(TracePoint).where(TracePoint.job_id == job_id))
    session.add(
        TraceCompaction(job_id=job_id, points=int(n), first_iteration=int(first or 0),
                        last_iteration=int(last or 0), compacted_at=utcnow())
    )  # fmt: skip
    session.flush()
    return int(n)


def due_query(cutoff: datetime, limit: int) -> Select[uuid.UUID]:
    """Up to ``limit`` terminal jobs finished before ``cutoff`` and not compacted, locked.

    Read by ``ix_jobs_compaction_due``, whose predicate is the same text: the jobs compacted
    before are not in it, so a pass costs the jobs it takes, not every job ever finished.
    """
    # a search still adding members prunes them against its earlier ones' points
    searching = exists().where(
        StudyMember.job_id == Job.id,
        StudyMember.study_id == Study.id,
        Study.kind == "search",
        Study.search_done.is_(False),
    )
    return (
        select(Job.id)
        .where(text(COMPACTION_DUE), Job.finished_at < cutoff, ~searching)
        .order_by(Job.finished_at)
        .limit(limit)
        .with_for_update(skip_locked=True, key_share=True)
    )


@dataclass
class CompactionPass:
    """What one :func:`compact_due` call did."""

    jobs: int = 0
    points: int = 0
    batches: int = 0
    seconds: float = 0.0
    done: bool = False  # no job left due (else the time limit stopped it)

    def as_dict(self) -> dict[str, Any]:
        """The figures, with the points per second."""
        rate = self.points / self.seconds if self.seconds > 0 else 0.0
        return {**self.__dict__, "points_per_s": round(rate, 1)}


def compact_due(
    sessions: sessionmaker[Session],
    retention: timedelta,
    *,
    batch: int = 20,
    max_s: float | None = None,
    now: datetime | None = None,
) -> CompactionPass:
    """Compact every job finished more than ``retention`` before ``now``, ``batch`` per transaction.

    Bounded: stops after the batch that passes ``max_s`` seconds (None: when none is left).
    """
    cutoff = (now or utcnow()) - retention
    out = CompactionPass()
    t0 = time.perf_counter()
    while max_s is None or time.perf_counter() - t0 < max_s:
        with sessions.begin() as s:
            ids = list(s.scalars(due_query(cutoff, batch)))
            out.points += sum(compact_job(s, job_id) for job_id in ids)
        out.jobs += len(ids)
        out.batches += bool(ids)
        if len(ids) < batch:
            out.done = True
            break
    out.seconds = time.perf_counter() - t0
    return out


def compacted_span(record: TraceCompaction, after: int) -> tuple[int, int, int]:
    """:func:`trace_span` of a compacted trace: the points it had past ``after``."""
    first = max(record.first_iteration, after + 1)
    last = record.last_iteration
    if record.points == 0 or last < first:
        return 0, 0, 0
    return last - first + 1, first, last


def compacted_columns(
    session: Session,
    job_id: uuid.UUID,
    *,
    after: int,
    last: int,
    max_points: int | None,
    fields: Sequence[str],
) -> dict[str, list[Any]]:
    """Columns of a compacted trace: the points its rollups name, past ``after``.

    Each block keeps, per field, its minimum and maximum and their iterations: those
    iterations are the rows, each with the values the blocks hold for it (``None`` for a
    field whose extreme is elsewhere). Beyond ``max_points`` rows, blocks are merged into
    equal buckets and each bucket keeps its extremes, as the full-resolution downsampling
    does (minima over blocks are minima over points).
    """
    want = list(fields)
    fields = want or list(TRACE_FIELDS)  # iterations alone: those of every field's extremes
    names = [f"{f}_{part}" for f in fields for part in ("min", "min_it", "max", "max_it")]
    rows = session.execute(
        select(trace_blocks.c.block, *(trace_blocks.c[n] for n in names))
        .where(trace_blocks.c.job_id == job_id,
               trace_blocks.c.block.between(block_of(after + 1), block_of(max(last, 1))))
        .order_by(trace_blocks.c.block)
    ).all()  # fmt: skip
    nf = len(fields)
    per_row = 2 * max(nf, 1)
    buckets = len(rows) if max_points is None else max(1, max_points // per_row)
    best: dict[tuple[int, int, str], tuple[float, int]] = {}
    for k, r in enumerate(rows):
        bucket = k * buckets // max(len(rows), 1)
        for j in range(nf):
            lo, lo_it, hi, hi_it = r[1 + 4 * j : 5 + 4 * j]
            if lo is not None and lo_it > after:
                key = (bucket, j, "min")
                if key not in best or (lo, lo_it) < best[key]:
                    best[key] = (lo, lo_it)
            if hi is not None and hi_it > after:
                key = (bucket, j, "max")
                if key not in best or (-hi, hi_it) < (-best[key][0], best[key][1]):
                    best[key] = (hi, hi_it)
    values: dict[int, dict[str, float]] = {}
    for (_, j, _), (v, it) in best.items():
        values.setdefault(it, {})[fields[j]] = v
    its = sorted(values)
    out: dict[str, list[Any]] = {"iteration": its}
    for f in want:
        out[f] = [values[it].get(f) for it in its]
    return out
