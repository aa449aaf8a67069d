"""The pool as people see it: teams' shares, live workers, the queue's positions; weights.

Everything here reads; :func:`set_team_policy` is the one write (an admin's, through
``PATCH /v1/teams/{name}`` or ``bilevel teams set``, audited here for both). The queue
positions come from the same selection the claims use (:func:`jobs.fairshare.jobs_ahead`,
the places :func:`jobs.fairshare.pick_order` gives, counted from each team's queued jobs),
so no read of the pool goes through the queue job by job.
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
from jobs.queue_estimate import Finished, FreeWorkers, Shape, expected_run_s, remaining_s
from jobs.status import AuditAction, AuditTarget, JobStatus, QueueKind
from jobs.store.models import Job, Team, Worker, utcnow
from jobs.store.repo.audit import Actor, record_event
from jobs.store.repo.scheduling import (
    KINDS,
    Policy,
    live_workers,
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
    "list_teams",
    "pool_answers",
    "pool_state_age",
    "pool_view",
    "refresh_pool_state",
    "set_team_policy",
    "team_by_name",
]

_UNSET: Any = object()

# the viewer's queued jobs that GET /v1/pool lists, per queue kind, first to start first (a
# study queues thousands; the rest are in GET /v1/jobs?status=queued)
QUEUED_SHOWN = 200
# teams whose places a refresh counts ahead of their next request (each ~10-20 ms at 100
# teams and 200 jobs shown), so that a refresh stays short with hundreds of teams polling
WARM_TEAMS = 16


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
    # the reading's own dict: what a caller renders from this view, it may keep there until
    # the next reading (keyed by what the view depends on: the viewer)
    answers: dict[Any, Any] = field(default_factory=dict)


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


def _free_workers(
    session: Session, kind: str, workers: list[str], history: list[Finished]
) -> FreeWorkers:
    """When each of the live ``workers`` of ``kind`` is free (its running job's time left)."""
    now = utcnow()
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
    return FreeWorkers(list(free_in.values()))


@dataclass
class _Queue:
    """One kind's queue in numbers: what the viewers' places and estimated starts need."""

    loads: dict[str, fairshare.TeamLoad]
    counts: dict[str, int]  # queued jobs (not asked to cancel) by team
    run_s: dict[str, float]  # by team, its queued jobs' mean expected running time
    default_run_s: float
    workers: FreeWorkers
    oldest: datetime | None
    # team -> its queued jobs shown, placed: read once per reading, by the refresh for the
    # teams that asked during the last one (a team's pollers ask again and again)
    shown: dict[uuid.UUID, list[QueuedView]] = field(default_factory=dict)

    def places(self, team: str, n: int) -> list[tuple[int, float | None]]:
        """The places and estimated starts of ``team``'s first ``n`` queued jobs."""
        got = []
        for ahead in fairshare.jobs_ahead(self.loads, self.counts, team, n):
            jobs = sum(ahead.values())
            work = sum(k * self.run_s.get(t, self.default_run_s) for t, k in ahead.items())
            got.append((jobs + 1, self.workers.start_s(jobs, work)))
        return got


def _queue(session: Session, kind: str, policy: Policy, workers: list[str]) -> _Queue:
    """:class:`_Queue` from aggregates: the queued jobs by team and shape, not one by one.

    The shapes' fields are read in the database (a study's jobs share a handful), so the
    read grows with teams times shapes, whatever the queue's length.
    """
    history = _history(session, kind)
    rows = session.execute(
        select(
            Job.team_id,
            Job.spec[("problem", "kind")].as_string(),
            Job.spec[("inner", "steps")].as_integer(),
            Job.spec[("outer", "iterations")].as_integer(),
            func.count(),
            func.min(Job.enqueued_at),
        )
        .where(Job.queue == kind, Job.status == JobStatus.QUEUED, Job.cancel_requested.is_(False))
        .group_by(text("1"), text("2"), text("3"), text("4"))  # the select's columns
    ).all()
    counts: dict[str, int] = {}
    work: dict[str, float] = {}
    firsts = [at for *_, at in rows if at is not None]
    for team, problem, steps, iterations, n, _ in rows:
        # Shape.of, from the fields read in the database
        shape = Shape(str(problem or ""), int(steps or 1), int(iterations or 1))
        counts[str(team)] = counts.get(str(team), 0) + n
        work[str(team)] = work.get(str(team), 0.0) + n * expected_run_s(shape, history)
    return _Queue(
        loads=team_loads(session, kind, policy),
        counts=counts,
        run_s={t: work[t] / counts[t] for t in counts},
        default_run_s=expected_run_s(Shape.of({}), history),
        workers=_free_workers(session, kind, workers, history),
        oldest=min(firsts) if firsts else None,
    )


@dataclass
class _PoolState:
    """What every viewer sees alike, read at ``at`` (monotonic seconds); kept for a while."""

    at: float
    teams: list[TeamView]
    alive: dict[str, datetime]
    queues: dict[str, str]  # live worker -> its queue kind
    running_by_worker: dict[str, tuple[uuid.UUID, str]]
    kinds: dict[str, _Queue]
    oldest: dict[str, float | None]
    # what callers make of this reading, kept until the next (the route's answers per viewer)
    answers: dict[Any, Any] = field(default_factory=dict)


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
    kinds: dict[str, _Queue] = {}
    for kind in KINDS:
        q = kinds[kind] = _queue(session, kind, policy, [w for w in alive if queues[w] == kind])
        total_w = sum(t.weight for t in q.loads.values()) or 1.0
        total_r = sum(t.running for t in q.loads.values()) or 1
        for tid, load in q.loads.items():
            view = teams.setdefault(tid, TeamView(names[uuid.UUID(tid)], load.weight))
            view.kinds[kind] = KindView(running=load.running, queued=q.counts.get(tid, 0),
                                        limit=load.limit, fair_share=load.weight / total_w,
                                        share=load.running / total_r)  # fmt: skip
        for r, _, worker in running_jobs(session, kind):
            running_by_worker[worker] = (r.id, r.team)
        oldest[kind] = (now - q.oldest).total_seconds() if q.oldest is not None else None
    return _PoolState(time.monotonic(), sorted(teams.values(), key=lambda t: t.name), alive,
                      queues, running_by_worker, kinds, oldest)  # fmt: skip


def pool_state_age(memo: dict[str, Any]) -> float | None:
    """Seconds since the shared part in ``memo`` was read; ``None`` when there is none."""
    state = memo.get("pool")
    return None if state is None else time.monotonic() - state.at


def pool_answers(memo: dict[str, Any]) -> dict[Any, Any] | None:
    """The answers kept beside the reading in ``memo`` (:attr:`PoolView.answers`), or None."""
    state = memo.get("pool")
    return None if state is None else state.answers


def refresh_pool_state(session: Session, policy: Policy, memo: dict[str, Any]) -> None:
    """Read the shared part of :func:`pool_view` again into ``memo`` (a background refresh).

    The queued jobs of the teams that asked during the last reading (up to
    :data:`WARM_TEAMS` per kind) are read and placed here too, before the reading is shared:
    a team's pollers ask again, and are then answered without a query of their own.
    """
    old = memo.get("pool")
    state = _pool_state(session, policy)
    for kind, q in state.kinds.items():
        asked = list(old.kinds[kind].shown) if old is not None and kind in old.kinds else []
        for team in asked[:WARM_TEAMS]:
            _queued_of(session, team, kind, q)
    memo["pool"] = state


def _queued_of(session: Session, viewer: uuid.UUID, kind: str, q: _Queue) -> list[QueuedView]:
    """``viewer``'s first :data:`QUEUED_SHOWN` queued jobs of ``kind``, placed in the queue.

    Its jobs in the order its claims take them (one range of ``ix_jobs_queued_head``); their
    places and starts from the other teams' counts (:func:`jobs.fairshare.jobs_ahead`). Read
    once per reading: as the counts they are placed against, as of that reading.
    """
    got = q.shown.get(viewer)
    if got is not None:
        return got
    rows = session.execute(
        select(Job.id, Job.name, Job.priority)
        .where(Job.team_id == viewer, Job.queue == kind, Job.status == JobStatus.QUEUED,
               Job.cancel_requested.is_(False))
        .order_by(Job.priority.desc(), Job.created_at, Job.id)
        .limit(QUEUED_SHOWN)
    ).all()  # fmt: skip
    places = q.places(str(viewer), len(rows))
    got = q.shown[viewer] = [
        QueuedView(i, name, kind, priority, place, start)
        for (i, name, priority), (place, start) in zip(rows, places, strict=True)
    ]
    return got


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
    shares and queued counts, the workers) is read at most once per ``max_age_s`` and
    shared; the viewer's own queued jobs are read once per reading (on its first view, or
    by :func:`refresh_pool_state` when it asked during the last reading).
    """
    state = memo.get("pool") if memo is not None else None
    if state is None or time.monotonic() - state.at >= max_age_s:
        state = _pool_state(session, policy)
        if memo is not None:
            memo["pool"] = state
    queued_view: list[QueuedView] = []
    for kind, q in state.kinds.items():
        queued_view += _queued_of(session, viewer, kind, q)
    workers = []
    for name, seen in sorted(state.alive.items()):
        job = state.running_by_worker.get(name)
        own = job[0] if job is not None and job[1] == str(viewer) else None
        workers.append(WorkerView(name, state.queues[name], seen, busy=job is not None, job=own))
    return PoolView(state.teams, workers, state.oldest, queued_view, state.answers)


def _worker_kind(session: Session, worker: str) -> str:
    """The kind of the job ``worker`` runs (a worker that does not beat: the embedded one)."""
    kind = session.scalar(
        select(Job.queue).where(Job.worker == worker, Job.status == JobStatus.RUNNING).limit(1)
    )
    return kind or QueueKind.CPU
