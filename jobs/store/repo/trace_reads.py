"""Reading a job's trace: spans and versions for ETags, columns downsampled from rollups."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from sqlalchemy import (
    Double,
    Integer,
    and_,
    any_,
    bindparam,
    func,
    literal,
    select,
    text,
)
from sqlalchemy import cast as sa_cast
from sqlalchemy.dialects.postgresql import ARRAY as PG_ARRAY
from sqlalchemy.dialects.postgresql import array as pg_array
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from jobs.store.models import (
    TRACE_BLOCK,
    TRACE_FIELDS,
    Job,
    TracePoint,
    trace_blocks,
)
from jobs.store.repo.trace_compaction import compacted_columns, compacted_span, compaction_of
from jobs.store.repo.trace_writes import block_of

# -- traces ----------------------------------------------------------------------------------


def trace_version(session: Session, job_id: uuid.UUID, after: int) -> tuple[int, int]:
    """``(count, last iteration)`` of the points past ``after``: what an ETag hashes."""
    n, _, last = trace_span(session, job_id, after)
    return n, last


class TraceSpan(NamedTuple):
    """A trace's points past an iteration, and whether only their rollups are kept."""

    points: int
    first: int
    last: int
    compacted: bool = False


def trace_span(session: Session, job_id: uuid.UUID, after: int) -> tuple[int, int, int]:
    """``(points, first, last)`` past ``after`` from two index probes, no count scan.

    The runner writes every iteration from 1 on and truncates before resuming, so a trace
    is contiguous and ``last - first + 1`` is its size. A compacted trace answers the span
    its points had (``trace_compactions``).
    """
    return trace_span_of(session, job_id, after)[:3]


def trace_span_of(session: Session, job_id: uuid.UUID, after: int) -> TraceSpan:
    """:func:`trace_span`, saying whether the trace was compacted (one more probe if empty)."""
    first, last = session.execute(
        select(func.min(TracePoint.iteration), func.max(TracePoint.iteration)).where(
            TracePoint.job_id == job_id, TracePoint.iteration > after
        )
    ).one()
    if first is not None:
        return TraceSpan(int(last) - int(first) + 1, int(first), int(last))
    return _span_without_points(session, job_id, after)


def _span_without_points(session: Session, job_id: uuid.UUID, after: int) -> TraceSpan:
    """No points past ``after``: the compacted span past it, or none (one probe)."""
    record = compaction_of(session, job_id)
    if record is None:
        return TraceSpan(0, 0, 0)
    return TraceSpan(*compacted_span(record, after), compacted=True)


# the job's team and attempt, and its span's two index probes: one statement object with
# bound parameters, so SQLAlchemy keeps its cache key (Core: no entity is loaded)
_PAST = (
    TracePoint.job_id == bindparam("job_id", type_=TracePoint.job_id.type),
    TracePoint.iteration > bindparam("after", type_=Integer()),
)
_POLL = select(
    Job.team_id,
    Job.attempts,
    select(func.min(TracePoint.iteration)).where(*_PAST).scalar_subquery(),
    select(func.max(TracePoint.iteration)).where(*_PAST).scalar_subquery(),
).where(Job.id == bindparam("job_id", type_=Job.id.type))


class TracePoll(NamedTuple):
    """A job's team and attempt, with its trace's span: what a trace poll's ETag needs."""

    team_id: uuid.UUID
    attempts: int
    span: TraceSpan


def trace_poll(session: Session, job_id: uuid.UUID, after: int) -> TracePoll | None:
    """The job's team, attempt and :func:`trace_span_of` in one round trip; ``None``: no job.

    A dashboard asks for each trace about twice a second and most answers are 304: the job
    row and the span's two index probes come in one statement (one snapshot, too), and only
    an empty span costs the compaction probe of :func:`trace_span_of`.
    """
    row = session.connection().execute(_POLL, {"job_id": job_id, "after": after}).first()
    if row is None:
        return None
    team_id, attempts, first, last = row
    if first is not None:
        return TracePoll(team_id, attempts, TraceSpan(int(last) - int(first) + 1, int(first),
                                                      int(last)))  # fmt: skip
    return TracePoll(team_id, attempts, _span_without_points(session, job_id, after))


_ESTIMATE = text(
    "SELECT sum(c.reltuples)::bigint FROM pg_class c WHERE c.relkind = 'r' AND c.reltuples >= 0"
    " AND c.oid IN (SELECT 'trace_points'::regclass"
    "               UNION SELECT relid FROM pg_partition_tree('trace_points'))"
)


def estimated_trace_points(session: Session) -> int | None:
    """PostgreSQL's estimate of the points stored, summed over trace_points' partitions.

    The planner's row counts (``reltuples``, kept by (auto)vacuum and analyze) of the leaf
    tables: a partitioned table's own is never set. ``None`` on SQLite or before any analyze.
    """
    if session.get_bind().dialect.name != "postgresql":
        return None
    est = session.scalar(_ESTIMATE)
    return None if est is None else int(est)


def best_outer_loss(session: Session, job_id: uuid.UUID) -> tuple[float, int] | None:
    """``(outer loss, iteration)`` of the trace's lowest outer loss (the earliest on a tie)."""
    row = session.execute(
        select(TracePoint.outer_loss, TracePoint.iteration)
        .where(TracePoint.job_id == job_id, TracePoint.outer_loss.is_not(None))
        .order_by(TracePoint.outer_loss, TracePoint.iteration)
        .limit(1)
    ).first()
    return (float(row[0]), int(row[1])) if row is not None and row[0] is not None else None


def last_outer_loss(session: Session, job_id: uuid.UUID) -> float | None:
    """The outer loss of the trace's last point; ``None`` for an empty trace."""
    return session.scalar(
        select(TracePoint.outer_loss)
        .where(TracePoint.job_id == job_id)
        .order_by(TracePoint.iteration.desc())
        .limit(1)
    )


class TraceRows(NamedTuple):
    """The points a trace read answers: those past ``after`` up to ``last``, or only ``keep``.

    ``compacted``: the trace's points are gone, its rollups answer (``trace_compaction``).
    """

    fields: list[str]
    after: int
    last: int
    keep: list[int] | None = None
    compacted: bool = False


def trace_rows(
    session: Session,
    job_id: uuid.UUID,
    *,
    after: int = 0,
    max_points: int | None = None,
    fields: Iterable[str] = TRACE_FIELDS,
    span: tuple[int, int, int] | TraceSpan | None = None,
) -> TraceRows | None:
    """Which points :func:`trace_columns` answers with; ``None``: none (an empty trace).

    Downsampling splits the iterations into equal buckets and keeps, in each bucket, the rows
    holding the minimum and the maximum of every requested field (plus the first and last
    rows), so spikes and the best loss survive; there are about
    ``max_points / (2 * len(fields))`` buckets. A long trace takes its extremes from
    ``trace_blocks`` (one row per 64 iterations, kept by :func:`write_trace`), a short one
    from a grouped scan of the points.

    ``span`` is :func:`trace_span`'s answer when the caller has it (an ETag hashed it): the
    rows are those it counted, never points committed since.
    """
    fields = [f for f in fields if f != "iteration"]
    span = span or trace_span_of(session, job_id, after)
    n, first, last = span[:3]
    if n == 0:
        return None
    if isinstance(span, TraceSpan) and span.compacted:
        return TraceRows(fields, after, last, compacted=True)
    if max_points is None or n <= max_points:
        return TraceRows(fields, after, last)
    where = and_(TracePoint.job_id == job_id, TracePoint.iteration > after)
    keep = sorted(_extremes(session, job_id, where, fields, max_points, first, last))
    return TraceRows(fields, after, last, keep)


def trace_columns(
    session: Session,
    job_id: uuid.UUID,
    *,
    after: int = 0,
    max_points: int | None = None,
    fields: Iterable[str] = TRACE_FIELDS,
    span: tuple[int, int, int] | TraceSpan | None = None,
) -> dict[str, list[Any]]:
    """Columnar trace past ``after``, downsampled to at most ``max_points`` rows.

    The points are :func:`trace_rows`' (extremes kept when downsampled; ``span``: the rows it
    counted). A compacted trace (its points gone, its rollups kept: ``trace_compaction``)
    answers the points its rollups name; so does one compacted since ``span`` was read.
    """
    plan = trace_rows(session, job_id, after=after, max_points=max_points, fields=fields,
                      span=span)  # fmt: skip
    return columns_of(session, job_id, plan, max_points, fields)


def columns_of(
    session: Session,
    job_id: uuid.UUID,
    plan: TraceRows | None,
    max_points: int | None,
    fields: Iterable[str],
) -> dict[str, list[Any]]:
    """:func:`trace_rows`' answer read as columns (``fields``: for an empty trace's)."""
    if plan is None:
        return {"iteration": [], **{f: [] for f in fields if f != "iteration"}}
    if plan.compacted:
        return compacted_trace(session, job_id, plan, max_points)
    fields = plan.fields
    cols = [TracePoint.iteration, *(getattr(TracePoint, f) for f in fields)]
    if plan.keep is None:
        q = select(*cols).where(
            TracePoint.job_id == job_id, TracePoint.iteration > plan.after,
            TracePoint.iteration <= plan.last,
        ).order_by(TracePoint.iteration)  # fmt: skip
        rows = session.execute(q).all()
    elif session.get_bind().dialect.name == "postgresql":
        # one array parameter: a long IN list costs more to compile and plan than to run
        its = bindparam("its", plan.keep, type_=PG_ARRAY(Integer))
        only = select(*cols).where(TracePoint.job_id == job_id, TracePoint.iteration == any_(its))
        rows = session.execute(only.order_by(TracePoint.iteration)).all()
    else:
        # bound parameters are limited (SQLite: 32766): chunk the list
        rows = []
        for i in range(0, len(plan.keep), 5000):
            chunk = plan.keep[i : i + 5000]
            q = select(*cols).where(TracePoint.job_id == job_id, TracePoint.iteration.in_(chunk))
            rows += session.execute(q.order_by(TracePoint.iteration)).all()
    if not rows and compaction_of(session, job_id) is not None:
        return compacted_trace(session, job_id, plan, max_points)
    out: dict[str, list[Any]] = {"iteration": [r[0] for r in rows]}
    for i, f in enumerate(fields, start=1):
        out[f] = [r[i] for r in rows]
    return out


def compacted_trace(
    session: Session, job_id: uuid.UUID, plan: TraceRows, max_points: int | None
) -> dict[str, list[Any]]:
    """``plan``'s points from the rollups of a compacted trace."""
    return compacted_columns(session, job_id, after=plan.after, last=plan.last,
                             max_points=max_points, fields=plan.fields)  # fmt: skip


def _extremes_from_blocks(
    session: Session,
    job_id: uuid.UUID,
    where: ColumnElement[bool],
    fields: Sequence[str],
    max_points: int,
    first: int,
    last: int,
) -> set[int] | None:
    """Per-bucket extremes from trace_blocks, or ``None`` when the trace is too short.

    Buckets are whole blocks; the partial block ``first`` may start in contributes its own
    extremes from trace_points. Minima over blocks are minima over points, so the kept
    points are the same kind of extremes as the row-level path keeps.
    """
    nf = len(fields)
    buckets = (max_points - 2 - 2 * nf) // (2 * nf)
    head_end = min(last, (block_of(first) + 1) * TRACE_BLOCK)
    b0 = block_of(first) if (first - 1) % TRACE_BLOCK == 0 else block_of(first) + 1
    b1 = block_of(last)
    nblocks = b1 - b0 + 1
    if buckets < 1 or nblocks < 2 * buckets:
        return None
    keep: set[int] = set()
    if b0 > block_of(first):  # the head: first .. end of its block, from the points
        cols = [TracePoint.iteration, *(getattr(TracePoint, f) for f in fields)]
        head = session.execute(select(*cols).where(where, TracePoint.iteration <= head_end)).all()
        for i in range(1, nf + 1):
            vals = [(r[i], r[0]) for r in head if r[i] is not None]
            if vals:
                keep.add(min(vals)[1])
                keep.add(min(vals, key=lambda x: (-x[0], x[1]))[1])
    names = [f"{f}_{part}" for f in fields for part in ("min", "min_it", "max", "max_it")]
    rows = session.execute(
        select(trace_blocks.c.block, *(trace_blocks.c[n] for n in names)).where(
            trace_blocks.c.job_id == job_id, trace_blocks.c.block.between(b0, b1)
        )
    ).all()
    best: dict[tuple[int, int, str], tuple[float, int]] = {}
    for r in rows:
        bucket = (r[0] - b0) * buckets // nblocks
        for j in range(nf):
            lo, lo_it, hi, hi_it = r[1 + 4 * j : 5 + 4 * j]
            if lo is None:
                continue
            k = (bucket, j, "min")
            if k not in best or (lo, lo_it) < best[k]:
                best[k] = (lo, lo_it)
            k = (bucket, j, "max")
            if k not in best or (-hi, hi_it) < (-best[k][0], best[k][1]):
                best[k] = (hi, hi_it)
    keep.update(it for _, it in best.values())
    return keep


def _extremes(
    session: Session,
    job_id: uuid.UUID,
    where: ColumnElement[bool],
    fields: Sequence[str],
    max_points: int,
    first: int,
    last: int,
) -> set[int]:
    """Iterations of the per-bucket minima and maxima of ``fields``."""
    keep = {first, last}
    if max_points < 3:
        return set(list(sorted(keep))[:max_points])
    span = last - first + 1
    if not fields:
        step = span / (max_points - 2)
        return keep | {first + int(i * step) for i in range(max_points - 2)}
    fields = fields[: max(1, (max_points - 2) // 2)]  # very small budgets: fewer fields
    rolled = _extremes_from_blocks(session, job_id, where, fields, max_points, first, last)
    if rolled is not None:
        return keep | rolled
    buckets = max(1, (max_points - 2) // (2 * len(fields)))
    it = TracePoint.iteration
    # integers we computed, inlined: PostgreSQL then sees one GROUP BY expression
    bucket = ((it - literal(first, literal_execute=True)) * literal(buckets, literal_execute=True)
              // literal(span, literal_execute=True)).label("bucket")  # fmt: skip
    if session.get_bind().dialect.name == "postgresql":
        # min/max over ARRAY[value, iteration] is an argmin/argmax in one hash aggregate
        aggs = []
        for f in fields:
            col = getattr(TracePoint, f)
            pair = pg_array([col, sa_cast(it, Double)])
            for agg in (func.min, func.max):
                aggs.append(agg(pair).filter(col.is_not(None)))
        for row in session.execute(select(bucket, *aggs).where(where).group_by(bucket)):
            keep.update(int(p[1]) for p in row[1:] if p is not None)
    else:
        # SQLite returns the row that holds a lone min()/max() for bare columns
        for f in fields:
            col = getattr(TracePoint, f)
            for agg in (func.min, func.max):
                q = select(it, agg(col)).where(where, col.is_not(None)).group_by(bucket)
                keep.update(int(r[0]) for r in session.execute(q))
    if len(keep) > max_points:  # only when max_points < 6: keep the ends, thin the middle
        ordered = sorted(keep)
        step = (len(ordered) - 1) / (max_points - 1)
        keep = {ordered[round(i * step)] for i in range(max_points)}
    return keep
