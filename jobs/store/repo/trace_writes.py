"""Writing a job's trace: points in one statement per batch, with their per-block rollups."""

from __future__ import annotations

import math
import operator
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import (
    and_,
    case,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from jobs.store.models import (
    TRACE_BLOCK,
    TRACE_FIELDS,
    Artifact,
    Job,
    TracePoint,
    trace_blocks,
)
from jobs.store.repo.rows import rows_changed


def _clean(v: Any) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


# PostgreSQL: one INSERT of one array per column, unnest zipping them back into rows. The
# statement costs about the same for 10 points as for 10,000, where a multi-row VALUES binds
# nine parameters per point and spends tens of microseconds of Python on each; and ``%b``
# sends the arrays in binary, without formatting every number as text. The trace is written
# in the training job's process, so that time is the job's.
_PG_INSERT_TRACE = (
    f"INSERT INTO {TracePoint.__tablename__} (job_id, iteration, {', '.join(TRACE_FIELDS)}) "
    "SELECT %(job_id)s, * FROM unnest(%(iteration)b::integer[], "
    + ", ".join(f"%({f})b::double precision[]" for f in TRACE_FIELDS)
    + ") ON CONFLICT (job_id, iteration) DO NOTHING"
)


def write_trace(session: Session, job_id: uuid.UUID, records: Sequence[Mapping[str, Any]]) -> None:
    """Insert a batch of ``core.fit`` records; NaN and infinity become NULL.

    The batch's ``trace_blocks`` rows are computed from the records in hand and merged with
    the rows already stored (:func:`_merge_blocks`); no point is read back. Writing a point
    again (a retried commit that did land) changes nothing; writing it with other values is
    not supported (the runner truncates the trace before it resumes).
    """
    if not records:
        return
    its, cols = trace_columns_of(records)
    # a retried commit that did land must not fail on its own rows
    if _store_dialect(session) == "postgresql":
        params = {"job_id": job_id, "iteration": its, **cols}
        session.connection().exec_driver_sql(_PG_INSERT_TRACE, params)  # psycopg's own syntax
    else:
        names = ("iteration", *TRACE_FIELDS)
        rows = [{"job_id": job_id, **dict(zip(names, v))} for v in zip(its, *cols.values())]
        stmt = sqlite_insert(TracePoint).on_conflict_do_nothing(
            index_elements=["job_id", "iteration"]
        )
        session.execute(stmt, rows)
    _merge_blocks(session, _rollup(job_id, its, cols))


def trace_columns_of(
    records: Sequence[Mapping[str, Any]],
) -> tuple[list[int], dict[str, list[float | None]]]:
    """``records`` as columns: their iterations, and each field's values (NaN and inf: None)."""
    its = [int(r["iteration"]) for r in records]
    return its, {f: [_clean(r.get(f)) for r in records] for f in TRACE_FIELDS}


def truncate_trace(session: Session, job_id: uuid.UUID, after: int) -> int:
    """Delete trace points past ``after`` (a resumed run writes them again, identically)."""
    res = rows_changed(
        session, delete(TracePoint).where(TracePoint.job_id == job_id, TracePoint.iteration > after)
    )
    keep = (after - 1) // TRACE_BLOCK if after > 0 else -1
    session.execute(
        delete(trace_blocks).where(trace_blocks.c.job_id == job_id, trace_blocks.c.block > keep)
    )
    if after > 0:
        refresh_blocks(session, job_id, after, after)  # now partial
    return res


def stored_iteration(session: Session, job_id: uuid.UUID) -> int:
    """The last iteration of the stored trace (0 when it is empty)."""
    last = session.scalar(select(func.max(TracePoint.iteration)).where(TracePoint.job_id == job_id))
    return int(last or 0)


def checkpoint_iteration(session: Session, job_id: uuid.UUID) -> int:
    """The iteration of the job's stored checkpoint (0 when it has none): where it resumes."""
    it = session.scalar(
        select(Artifact.iteration).where(Artifact.job_id == job_id, Artifact.kind == "checkpoint")
    )
    return int(it or 0)


def rewind_trace(session: Session, job_id: uuid.UUID, after: int | None = None) -> int:
    """Cut the trace back to ``after`` (default: the checkpoint's) and set ``jobs.iteration`` to it.

    Both in the caller's transaction, so that the stored trace and the job's iteration agree
    whenever an attempt ends without writing its last points (a killed process) and the job
    goes back to the queue: it resumes from its checkpoint, and writes the points past it
    again, identically. The caller fences the job row (the attempt it held, or the claim).

    Returns:
        The iteration the job now stands at.
    """
    at = checkpoint_iteration(session, job_id) if after is None else after
    truncate_trace(session, job_id, at)
    session.execute(update(Job).where(Job.id == job_id).values(iteration=at))
    return at


def block_of(iteration: int) -> int:
    """The trace_blocks row holding ``iteration`` (1-based): block b is ``64b+1 .. 64b+64``."""
    return (iteration - 1) // TRACE_BLOCK


def _extreme(row: dict[str, Any], f: str, pairs: list[tuple[float, int]]) -> None:
    """Set ``row``'s min and max of ``f`` from ``(value, iteration)`` pairs.

    Ties keep the earliest iteration, so the result does not depend on how the points were
    split into batches.
    """
    if not pairs:
        return
    row[f"{f}_min"], row[f"{f}_min_it"] = min(pairs)
    hi = max(v for v, _ in pairs)
    row[f"{f}_max"], row[f"{f}_max_it"] = hi, min(it for v, it in pairs if v == hi)


def _rollup(
    job_id: uuid.UUID, its: Sequence[int], cols: Mapping[str, Sequence[float | None]]
) -> dict[int, dict[str, Any]]:
    """trace_blocks rows of these points alone (every column; None where no value), by block."""
    members: dict[int, list[int]] = {}
    for k, it in enumerate(its):
        members.setdefault(block_of(it), []).append(k)
    blocks = {}
    for b, ks in members.items():
        row: dict[str, Any] = {**dict.fromkeys(_BLOCK_COLUMNS), "job_id": job_id, "block": b}
        for f, col in cols.items():
            _extreme(row, f, [(v, its[k]) for k in ks if (v := col[k]) is not None])
        blocks[b] = row
    return blocks


def _upsert_blocks(insert_: Any) -> Any:
    """``INSERT INTO trace_blocks ... ON CONFLICT DO UPDATE`` merging the two rows' extremes."""
    ins = insert_(trace_blocks)
    new, old = ins.excluded, trace_blocks.c
    merged = {}
    for f in TRACE_FIELDS:
        for part, better in (("min", operator.lt), ("max", operator.gt)):
            v, it = f"{f}_{part}", f"{f}_{part}_it"
            # the batch's extreme wins when it is more extreme, or as extreme and earlier
            # (ties keep the earliest iteration); NULL (no value) never wins over a value
            wins = or_(
                old[v].is_(None),
                better(new[v], old[v]),
                and_(new[v] == old[v], new[it] < old[it]),
            )
            merged[v] = case((wins, new[v]), else_=old[v])
            merged[it] = case((wins, new[it]), else_=old[it])
    return ins.on_conflict_do_update(index_elements=["job_id", "block"], set_=merged)


# built once: a statement this size costs more to build and hash than to run
_UPSERT_BLOCKS = {"postgresql": _upsert_blocks(pg_insert), "sqlite": _upsert_blocks(sqlite_insert)}
_BLOCK_COLUMNS = tuple(c.name for c in trace_blocks.c)


def _store_dialect(session: Session) -> str:
    """``"postgresql"`` or ``"sqlite"``, the two stores the service runs on (``jobs.store.db``)."""
    name = session.get_bind().dialect.name
    if name not in _UPSERT_BLOCKS:
        raise ValueError(f"the job store must be PostgreSQL or SQLite, got {name}")
    return name


def _merge_blocks(session: Session, blocks: dict[int, dict[str, Any]]) -> None:
    """Store ``blocks``, each merged on conflict with the stored row of the same block.

    Extremes of a union are extremes of the parts' extremes, so the block a batch starts in
    (its head already stored) comes out as if recomputed from all its points, and a batch
    written twice leaves its blocks as they were. One statement: nothing is read back.
    """
    if blocks:
        session.execute(_UPSERT_BLOCKS[_store_dialect(session)], list(blocks.values()))


def refresh_blocks(session: Session, job_id: uuid.UUID, lo: int, hi: int) -> None:
    """Recompute the trace_blocks rows covering iterations ``lo..hi`` from trace_points.

    Only rows that differ from the recomputed ones are written (a compaction pass checks
    whole traces whose rollups are already right: rewriting them would only make dead rows).
    """
    b0, b1 = block_of(lo), block_of(hi)
    cols = [TracePoint.iteration, *(getattr(TracePoint, f) for f in TRACE_FIELDS)]
    points = session.execute(
        select(*cols).where(
            TracePoint.job_id == job_id,
            TracePoint.iteration.between(b0 * TRACE_BLOCK + 1, (b1 + 1) * TRACE_BLOCK),
        )
    ).all()
    its = [p[0] for p in points]
    by_field = {f: [p[i] for p in points] for i, f in enumerate(TRACE_FIELDS, start=1)}
    want = _rollup(job_id, its, by_field)
    in_range = and_(trace_blocks.c.job_id == job_id, trace_blocks.c.block.between(b0, b1))
    stored = session.execute(select(trace_blocks).where(in_range))
    have = {r.block: dict(r._mapping) for r in stored}
    wrong = [b for b, row in have.items() if want.get(b) != row]
    if wrong:
        session.execute(delete(trace_blocks).where(in_range, trace_blocks.c.block.in_(wrong)))
    _merge_blocks(session, {b: row for b, row in want.items() if have.get(b) != row})
