"""The pool as people see it: teams' shares, live workers, the queue's positions; weights.

Everything here reads; :func:`set_team_policy` is the one write (an admin's, through
``PATCH /v1/teams/{name}`` or ``bilevel teams set``, audited here for both). The queue
positions and estimated starts come from the same selection the claims use
(:func:`jobs.fairshare.pick_order`).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from jobs import fairshare
from jobs.queue_estimate import Finished, Shape, expected_run_s, remaining_s
from jobs.status import AuditAction, AuditTarget, JobStatus, QueueKind
from jobs.store.models import Job, JobEvent, Team, TracePoint, Worker, utcnow
from jobs.store.repo.audit import Actor, record_event
from jobs.store.repo.scheduling import (
    KINDS,
    Policy,
    live_workers,
    queued_candidates,
    running_jobs,
    team_loads,
)

__all__ = [
    "QUEUED_SHOWN",
    "KindView",
    "PoolView",
    "QueuedView",
    "TeamView",
    "WorkerView",
    "durations",
    "job_counts",
    "list_teams",
    "pool_state_age",
    "pool_view",
    "preemption_count",
    "refresh_pool_state",
    "set_team_policy",
    "team_by_name",
    "trace_point_count",
]

_UNSET: Any = object()

# the viewer's queued jobs that GET /v1/pool lists, per queue kind, first to start first (a
# study queues thousands; the rest are in GET /v1/jobs?status=queued)
QUEUED_SHOWN = 200


@dataclass
class KindView:
    """A team's jobs on one kind of worker."""

    running: int = 0
    queued: int = 0
    limit: int = 0
    fair_share: float = 0.0  # the fraction of this kind's workers its weight entitles it to
    share: float = 0.0  # the fraction of this kind's running jobs that are its own


@dataclass
class TeamView:
    """One team in the pool."""

    name: str
    weight: float
    kinds: dict[str, KindView] = field(default_factory=dict)


@dataclass
class WorkerView:
    """A live worker; ``job`` only when it runs a job of the viewing team."""

    name: str
    queue: str
    last_seen: datetime
    busy: bool
    job: uuid.UUID | None


@dataclass
class QueuedView:
    """One of the viewing team's queued jobs: its place in the pool's queue and a guess."""

    id: uuid.UUID
    name: str
    queue: str
    priority: int
    position: int  # 1 = the next job a free worker of its kind takes
    estimated_start_s: float | None  # None: no live worker of its kind


@dataclass
class PoolView:
    """What ``GET /v1/pool`` shows."""

    teams: list[TeamView]
    workers: list[WorkerView]
    oldest_wait_s: dict[str, float | None]
    queued: list[QueuedView]


def list_teams(session: Session) -> list[Team]:
    """Every team, by name."""
    return list(session.scalars(select(Team).order_by(Team.name)))


def team_by_name(session: Session, name: str) -> Team | None:
    """The team called ``name``, or ``None``."""
    return session.scalar(select(Team).where(Team.name == name))


def set_team_policy(
    session: Session,
    name: str,
    *,
    actor: Actor,
    weight: float | None = _UNSET,
    max_running_cpu: int | None = _UNSET,
    max_running_gpu: int | None = _UNSET,
) -> Team | None:
    """Set a team's weight and running limits; ``None`` resets one to the default.

    Arguments left out are left as they are. A change is audited as ``team.update`` by
    ``actor``, with the given fields' values before and after; the pool is shared, so the
    event is also the changed team's (``target_team_id``).

    Returns:
        The team, or ``None`` if there is no team called ``name``.

    Raises:
        ValueError: a weight not above 0 or a limit below 1, naming it and its value.
    """
    team = team_by_name(session, name)
    if team is None:
        return None
    asked = {"weight": weight, "max_running_cpu": max_running_cpu,
             "max_running_gpu": max_running_gpu}  # fmt: skip
    given = {f: v for f, v in asked.items() if v is not _UNSET}
    before = {f: getattr(team, f) for f in given}
    if weight is not _UNSET:
        if weight is not None and not weight > 0:
            raise ValueError(f"weight must be > 0, got {weight}")
        team.weight = weight
    for attr, value in (("max_running_cpu", max_running_cpu), ("max_running_gpu", max_running_gpu)):
        if value is _UNSET:
            continue
        if value is not None and value < 1:
            raise ValueError(f"{attr} must be >= 1, got {value}")
        setattr(team, attr, value)
    session.flush()
    if given:
        record_event(session, actor, AuditAction.TEAM_UPDATE, AuditTarget.TEAM, name,
                     target_team_id=team.id, before=before,
                     after={f: getattr(team, f) for f in given})  # fmt: skip
    return team


def _history(session: Session, kind: str) -> list[Finished]:
    """The kind's last 50 successes: shape and running time (the queue's estimates)."""
    rows = session.execute(
        select(Job.spec, Job.running_since, Job.finished_at)
        .where(Job.queue == kind, Job.status == JobStatus.SUCCEEDED,
               Job.running_since.is_not(None))
        .order_by(Job.finished_at.desc())
        .limit(50)
    ).all()  # fmt: skip
    return [Finished(Shape.of(spec), (end - start).total_seconds())
            for spec, start, end in rows if end and start]  # fmt: skip


def _starts(
    session: Session, kind: str, workers: list[str], order: list[uuid.UUID]
) -> dict[uuid.UUID, float]:
    """Seconds until each job of ``order`` starts on ``workers`` (:mod:`jobs.queue_estimate`).

    Reads only the fields a :class:`~jobs.queue_estimate.Shape` needs, and estimates each
    distinct shape once (a study's jobs share a handful).
    """
    now = utcnow()
    history = _history(session, kind)
    free_in = dict.fromkeys(workers, 0.0)
    for worker, spec, eta, updated, since in session.execute(
        select(Job.worker, Job.spec, Job.eta_s, Job.updated_at, Job.running_since)
        .where(Job.queue == kind, Job.status == JobStatus.RUNNING)
    ):  # fmt: skip
        if worker in free_in:
            free_in[worker] = remaining_s(
                expected_s=expected_run_s(Shape.of(spec), history),
                elapsed_s=(now - since).total_seconds() if since else 0.0,
                eta_s=eta,
                eta_age_s=(now - updated).total_seconds(),
            )
    if not free_in:
        return {}
    shape_of = select(
        Job.id,
        Job.spec[("problem", "kind")].as_string(),
        Job.spec[("inner", "steps")].as_integer(),
        Job.spec[("outer", "iterations")].as_integer(),
    ).where(Job.queue == kind, Job.status == JobStatus.QUEUED)
    expected: dict[tuple[Any, Any, Any], float] = {}
    duration: dict[uuid.UUID, float] = {}
    for i, *fields in session.execute(shape_of):
        key = tuple(fields)
        if key not in expected:
            problem, steps, iterations = key
            shape = Shape(str(problem or ""), int(steps or 1), int(iterations or 1))  # Shape.of
            expected[key] = expected_run_s(shape, history)
        duration[i] = expected[key]
    default = expected_run_s(Shape.of({}), history)
    return fairshare.estimated_starts(
        order, list(free_in.values()), {j: duration.get(j, default) for j in order}
    )


@dataclass
class _PoolState:
    """What every viewer sees alike, read at ``at`` (monotonic seconds); kept for a while."""

    at: float
    teams: list[TeamView]
    alive: dict[str, datetime]
    queues: dict[str, str]  # live worker -> its queue kind
    running_by_worker: dict[str, tuple[uuid.UUID, str]]
    orders: dict[str, list[fairshare.Candidate[uuid.UUID]]]
    starts: dict[str, dict[uuid.UUID, float]]
    oldest: dict[str, float | None]


def _pool_state(session: Session, policy: Policy) -> _PoolState:
    now = utcnow()
    names = {tid: name for tid, name in session.execute(select(Team.id, Team.name))}
    teams: dict[str, TeamView] = {}
    oldest: dict[str, float | None] = {}
    alive = live_workers(session, policy)
    worker_rows = {w.name: w for w in session.scalars(select(Worker))}
    queues = {w: worker_rows[w].queue if w in worker_rows else _worker_kind(session, w)
              for w in alive}  # fmt: skip
    running_by_worker: dict[str, tuple[uuid.UUID, str]] = {}
    orders: dict[str, list[fairshare.Candidate[uuid.UUID]]] = {}
    starts: dict[str, dict[uuid.UUID, float]] = {}
    for kind in KINDS:
        loads = team_loads(session, kind, policy)
        queued = queued_candidates(session, kind, per_team=None)
        running = running_jobs(session, kind)
        total_w = sum(t.weight for t in loads.values()) or 1.0
        total_r = sum(t.running for t in loads.values()) or 1
        counts: dict[str, int] = {}
        for c in queued:
            counts[c.team] = counts.get(c.team, 0) + 1
        for tid, load in loads.items():
            view = teams.setdefault(tid, TeamView(names[uuid.UUID(tid)], load.weight))
            view.kinds[kind] = KindView(running=load.running, queued=counts.get(tid, 0),
                                        limit=load.limit, fair_share=load.weight / total_w,
                                        share=load.running / total_r)  # fmt: skip
        for r, _, worker in running:
            running_by_worker[worker] = (r.id, r.team)
        orders[kind] = fairshare.pick_order(loads, queued)
        kind_workers = [w for w in alive if queues[w] == kind]
        starts[kind] = _starts(session, kind, kind_workers, [c.id for c in orders[kind]])
        first = session.scalar(
            select(func.min(Job.enqueued_at)).where(Job.queue == kind,
                                                    Job.status == JobStatus.QUEUED)
        )  # fmt: skip
        oldest[kind] = (now - first).total_seconds() if first is not None else None
    return _PoolState(time.monotonic(), sorted(teams.values(), key=lambda t: t.name), alive,
                      queues, running_by_worker, orders, starts, oldest)  # fmt: skip


def pool_state_age(memo: dict[str, Any]) -> float | None:
    """Seconds since the shared part in ``memo`` was read; ``None`` when there is none."""
    state = memo.get("pool")
    return None if state is None else time.monotonic() - state.at


def refresh_pool_state(session: Session, policy: Policy, memo: dict[str, Any]) -> None:
    """Read the shared part of :func:`pool_view` again into ``memo`` (a background refresh)."""
    memo["pool"] = _pool_state(session, policy)


def pool_view(
    session: Session,
    policy: Policy,
    viewer: uuid.UUID,
    *,
    memo: dict[str, Any] | None = None,
    max_age_s: float = 0.0,
) -> PoolView:
    """The pool now: every active team's jobs by kind, live workers, ``viewer``'s queue.

    With ``memo`` (a dict the caller keeps), what every viewer sees alike (the teams'
    shares, the queue's order and estimated starts: a read of the whole queue) is read at
    most once per ``max_age_s`` and shared; only the viewer's own part is read each time.
    """
    state = memo.get("pool") if memo is not None else None
    if state is None or time.monotonic() - state.at >= max_age_s:
        state = _pool_state(session, policy)
        if memo is not None:
            memo["pool"] = state
    queued_view: list[QueuedView] = []
    for kind, order in state.orders.items():
        mine = [(pos, c) for pos, c in enumerate(order, start=1) if c.team == str(viewer)]
        mine = mine[:QUEUED_SHOWN]
        ids = [c.id for _, c in mine]
        names_of = dict(session.execute(select(Job.id, Job.name).where(Job.id.in_(ids))).all())
        queued_view += [QueuedView(c.id, names_of[c.id], kind, c.priority, pos,
                                   state.starts[kind].get(c.id))
                        for pos, c in mine if c.id in names_of]  # fmt: skip
    workers = []
    for name, seen in sorted(state.alive.items()):
        job = state.running_by_worker.get(name)
        own = job[0] if job is not None and job[1] == str(viewer) else None
        workers.append(WorkerView(name, state.queues[name], seen, busy=job is not None, job=own))
    return PoolView(state.teams, workers, state.oldest, queued_view)


def _worker_kind(session: Session, worker: str) -> str:
    """The kind of the job ``worker`` runs (a worker that does not beat: the embedded one)."""
    kind = session.scalar(
        select(Job.queue).where(Job.worker == worker, Job.status == JobStatus.RUNNING).limit(1)
    )
    return kind or QueueKind.CPU


def job_counts(session: Session) -> list[tuple[str, str, str, int]]:
    """``(team, queue kind, status, jobs)`` for every combination that has jobs."""
    rows = session.execute(
        select(Team.name, Job.queue, Job.status, func.count())
        .join(Team, Team.id == Job.team_id)
        .group_by(Team.name, Job.queue, Job.status)
    ).all()
    return [(t, q, s, int(n)) for t, q, s, n in rows]


def durations(session: Session) -> tuple[list[float], list[float]]:
    """``(queue waits, run times)`` in seconds of every job that has started and finished.

    The wait is from submission to the first start; the run time from the last start to
    the end (a preempted job's earlier attempts are not in it).
    """
    rows = session.execute(
        select(Job.created_at, Job.started_at, Job.running_since, Job.finished_at).where(
            Job.started_at.is_not(None)
        )
    ).all()
    waits = [(s - c).total_seconds() for c, s, _, _ in rows if s is not None]
    runs = [(f - r).total_seconds() for _, _, r, f in rows if r is not None and f is not None]
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
    if session.get_bind().dialect.name == "postgresql":
        est = session.scalar(
            text("SELECT reltuples::bigint FROM pg_class WHERE oid = 'trace_points'::regclass")
        )
        if est is not None and est >= TRACE_COUNT_ESTIMATE_ABOVE:
            return int(est)
    return int(session.scalar(select(func.count()).select_from(TracePoint)) or 0)
