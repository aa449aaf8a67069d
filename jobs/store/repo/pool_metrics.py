"""What ``GET /metrics`` counts: jobs by team, kind and status, waits and run times, and more.

Each figure is one aggregate computed by the database (the histograms' buckets included),
so a scrape moves a few rows, whatever the number of jobs the store has seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Float, and_, cast, func, select
from sqlalchemy.orm import Session

from jobs.status import JobStatus
from jobs.store.models import Job, JobEvent, Team, TracePoint
from jobs.store.repo.trace_reads import estimated_trace_points

__all__ = [
    "TRACE_COUNT_ESTIMATE_ABOVE",
    "Histogram",
    "durations",
    "job_counts",
    "preemption_count",
    "trace_point_count",
]


def job_counts(session: Session) -> list[tuple[str, str, str, int]]:
    """``(team, queue kind, status, jobs)`` for every combination that has jobs."""
    rows = session.execute(
        select(Team.name, Job.queue, Job.status, func.count())
        .join(Team, Team.id == Job.team_id)
        .group_by(Team.name, Job.queue, Job.status)
    ).all()
    return [(t, q, s, int(n)) for t, q, s, n in rows]


@dataclass(frozen=True)
class Histogram:
    """Observations in cumulative buckets, as Prometheus keeps them."""

    buckets: tuple[tuple[float, int], ...]  # (upper bound, observations <= it)
    count: int
    total: float


def _seconds(session: Session, end: Any, start: Any) -> ColumnElement[float]:
    """``end - start`` in seconds, in the database's own arithmetic."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.extract("epoch", end - start), Float)
    return (func.julianday(end) - func.julianday(start)) * 86400.0


def _histogram(
    session: Session, seconds: ColumnElement[float], where: ColumnElement[bool],
    buckets: Sequence[float],
) -> Histogram:  # fmt: skip
    row = session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(seconds), 0.0),
            *(func.count().filter(seconds <= b) for b in buckets),
        ).where(where)
    ).one()
    count, total, *cumulative = row
    return Histogram(tuple(zip((float(b) for b in buckets), map(int, cumulative), strict=True)),
                     int(count), float(total))  # fmt: skip


def durations(
    session: Session, wait_buckets: Sequence[float], run_buckets: Sequence[float]
) -> tuple[Histogram, Histogram]:
    """``(queue waits, run times)`` in seconds of the jobs that started (and finished).

    The wait is from submission to the first start, of every job that started; the run
    time from the last start to the end, of every one that also finished (a preempted
    job's earlier attempts are not in it).
    """
    waits = _histogram(session, _seconds(session, Job.started_at, Job.created_at),
                       Job.started_at.is_not(None), wait_buckets)  # fmt: skip
    finished = and_(Job.started_at.is_not(None), Job.running_since.is_not(None),
                    Job.finished_at.is_not(None))  # fmt: skip
    runs = _histogram(session, _seconds(session, Job.finished_at, Job.running_since),
                      finished, run_buckets)  # fmt: skip
    return waits, runs


def preemption_count(session: Session) -> int:
    """How many times a running job went back to the queue (preemptions and shutdowns)."""
    n = session.scalar(
        select(func.count())
        .select_from(JobEvent)
        .where(JobEvent.from_status == JobStatus.RUNNING, JobEvent.to_status == JobStatus.QUEUED,
               JobEvent.detail["reason"].as_string() == "preempted")
    )  # fmt: skip
    return int(n or 0)


# above this many rows PostgreSQL's own count (kept by autovacuum's ANALYZE) is close enough
# for a gauge, and an exact count(*) would read the whole table at every scrape
TRACE_COUNT_ESTIMATE_ABOVE = 1_000_000


def trace_point_count(session: Session) -> int:
    """How many trace points the store holds (every job's).

    Exact up to :data:`TRACE_COUNT_ESTIMATE_ABOVE`; above it, on PostgreSQL, the planner's
    estimate (``pg_class.reltuples``): counting 10^9 rows takes minutes.
    """
    # summed over the partitions: a partitioned table's own estimate is never set
    est = estimated_trace_points(session)
    if est is not None and est >= TRACE_COUNT_ESTIMATE_ABOVE:
        return est
    return int(session.scalar(select(func.count()).select_from(TracePoint)) or 0)
