"""The pool's scheduling in the store: what the fair-share claim reads, preemption, beats.

The choice itself is :mod:`jobs.fairshare` (pure); this module reads what it needs (team
loads, queue heads, running jobs) and asks running jobs to yield. The claim that applies the
choice is :mod:`jobs.store.repo.claims`. Preemption passes of one queue kind are serialised
by a transaction-scoped advisory lock (:func:`lock_kind`).
"""

from __future__ import annotations

import uuid
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, delete, func, or_, select, text, true, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from jobs import fairshare
from jobs.fairshare import Candidate, Running, TeamLoad
from jobs.settings import StoreSettings
from jobs.status import JobStatus, QueueKind
from jobs.store.models import Job, Team, Worker, utcnow
from jobs.store.repo.rows import rows_changed

__all__ = [
    "Policy",
    "beat_worker",
    "drop_worker",
    "kind_lock_key",
    "live_workers",
    "lock_kind",
    "queued_candidates",
    "queued_counts",
    "request_preemptions",
    "running_jobs",
    "takes_pass_turn",
    "team_loads",
]

KINDS: tuple[QueueKind, ...] = tuple(QueueKind)


@dataclass(frozen=True)
class Policy:
    """The pool's defaults and switches, from the settings every process shares."""

    default_weight: float = 1.0
    cpu_limit: int = 20
    gpu_limit: int = 20
    preemption: bool = True
    preempt_min_run_s: float = 60.0
    worker_alive_s: float = 30.0

    @classmethod
    def of(cls, settings: StoreSettings) -> Policy:
        """The policy the settings describe (a worker counts as alive for one lease)."""
        return cls(
            default_weight=settings.default_team_weight,
            cpu_limit=settings.max_running_jobs,
            gpu_limit=settings.max_running_gpu_jobs or settings.max_running_jobs,
            preemption=settings.preemption,
            preempt_min_run_s=settings.preempt_min_run_s,
            worker_alive_s=settings.lease_s,
        )

    def weight(self, team: Team) -> float:
        """The team's weight, or the default."""
        return self.weight_of(team.weight)

    def limit(self, team: Team, kind: str) -> int:
        """The team's running limit on ``kind`` workers, or the default."""
        return self.limit_of(kind, team.max_running_cpu, team.max_running_gpu)

    def weight_of(self, own: float | None) -> float:
        """A team's weight from its row's column (``None``: the default)."""
        return own if own is not None else self.default_weight

    def limit_of(self, kind: str, cpu: int | None, gpu: int | None) -> int:
        """A team's running limit on ``kind`` workers from its row's two columns."""
        if kind == QueueKind.GPU:
            return gpu if gpu is not None else self.gpu_limit
        return cpu if cpu is not None else self.cpu_limit


def kind_lock_key(kind: str) -> int:
    """The advisory lock of queue ``kind``: preemption passes take it alone, claims shared."""
    return zlib.crc32(f"bilevel.claim.{kind}".encode())


def lock_kind(session: Session, kind: str) -> None:
    """Serialise the claims (SQLite) and preemption passes of queue ``kind`` until commit.

    On PostgreSQL a claim takes the same lock *shared* (:mod:`jobs.store.repo.claims`): a
    preemption pass waits for the claims in flight and sees none half done, while claims do
    not wait for each other here. SQLite serialises writers anyway.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": kind_lock_key(kind)})


def _running_counts(session: Session, kind: str) -> dict[str, int]:
    """Running jobs of ``kind`` by team (at most one per worker)."""
    return {
        str(t): int(n)
        for t, n in session.execute(
            select(Job.team_id, func.count())
            .where(Job.queue == kind, Job.status == JobStatus.RUNNING)
            .group_by(Job.team_id)
        )
    }


def team_loads(session: Session, kind: str, policy: Policy) -> dict[str, TeamLoad]:
    """Every team with queued or running jobs of ``kind``, keyed by team id (as text).

    Two small reads, not one pass over the queue: the running jobs (at most one per
    worker) counted by team, and the teams that have a queued job (one probe of
    ``ix_jobs_queued_head`` each).
    """
    running = _running_counts(session, kind)
    has_queued = (
        select(Job.id)
        .where(Job.team_id == Team.id, Job.queue == kind, Job.status == JobStatus.QUEUED)
        .exists()
    )
    ids = [uuid.UUID(t) for t in running]
    teams = session.scalars(select(Team).where(or_(Team.id.in_(ids), has_queued)))
    return {
        str(team.id): TeamLoad(policy.weight(team), running.get(str(team.id), 0),
                               policy.limit(team, kind))
        for team in teams
    }  # fmt: skip


def queued_candidates(
    session: Session, kind: str, *, per_team: int | None = 1
) -> list[Candidate[uuid.UUID]]:
    """The queued jobs of ``kind`` as :func:`jobs.fairshare.pick_next` sees them.

    Args:
        session: the claim's (or the view's) session.
        kind: the queue kind, ``cpu`` or ``gpu``.
        per_team: only each team's first ``per_team`` in its own order (priority, then age);
            ``None`` for all of them.
    """
    order = (Job.priority.desc(), Job.created_at, Job.id)
    live: tuple[ColumnElement[bool], ...] = (
        Job.queue == kind,
        Job.status == JobStatus.QUEUED,
        Job.cancel_requested.is_(False),
    )
    if per_team is not None and session.get_bind().dialect.name == "postgresql":
        return _queue_heads(session, kind, per_team)
    if per_team is None:  # every one (the pool view's tens of thousands): no ranking
        rows = session.execute(
            select(Job.id, Job.team_id, Job.priority, Job.created_at)
            .where(*live)
            .order_by(Job.created_at)
        )
        teams: dict[uuid.UUID, str] = {}
        return [
            Candidate(i, teams.get(t) or teams.setdefault(t, str(t)), p, at) for i, t, p, at in rows
        ]
    rank = func.row_number().over(partition_by=Job.team_id, order_by=order).label("rank")
    inner = select(Job.id, Job.team_id, Job.priority, Job.created_at, rank).where(*live).subquery()
    q2 = select(inner.c.id, inner.c.team_id, inner.c.priority, inner.c.created_at)
    if per_team is not None:
        q2 = q2.where(inner.c.rank <= per_team)
    return [
        Candidate(id=r.id, team=str(r.team_id), priority=r.priority, created_at=r.created_at)
        for r in session.execute(q2.order_by(inner.c.created_at))
    ]


def _heads_query(kind: str, per_team: int, *, with_team: bool = False) -> Select[Any]:
    """Each team's first ``per_team`` queued jobs of ``kind``, one index probe per team.

    ``ix_jobs_queued_head`` holds the queued jobs by team, kind, priority (descending) and
    age, the order a team's jobs are taken in: the cost grows with the number of teams, not
    with the queue, nor with the teams' finished jobs. ``with_team`` adds each team's row.
    """
    head = (
        select(Job.id, Job.team_id, Job.priority, Job.created_at)
        .where(
            Job.team_id == Team.id,
            Job.queue == kind,
            Job.status == JobStatus.QUEUED,
            Job.cancel_requested.is_(False),
        )
        .order_by(Job.priority.desc(), Job.created_at, Job.id)
        .limit(per_team)
        .lateral("head")
    )
    cols = (Team, *head.c) if with_team else tuple(head.c)
    return select(*cols).select_from(Team).join(head, true())


def _queue_heads(session: Session, kind: str, per_team: int) -> list[Candidate[uuid.UUID]]:
    """:func:`_heads_query`'s jobs as candidates, oldest first."""
    out = [Candidate(id=r.id, team=str(r.team_id), priority=r.priority, created_at=r.created_at)
           for r in session.execute(_heads_query(kind, per_team))]  # fmt: skip
    return sorted(out, key=lambda c: c.created_at)


def running_jobs(session: Session, kind: str) -> list[tuple[Running[uuid.UUID], bool, str]]:
    """``(job, preempt_requested, worker)`` for every running job of ``kind``."""
    rows = session.execute(
        select(Job.id, Job.team_id, Job.running_since, Job.started_at, Job.preempt_requested,
               Job.worker)
        .where(Job.queue == kind, Job.status == JobStatus.RUNNING)
    ).all()  # fmt: skip
    return [
        (Running(r.id, str(r.team_id), r.running_since or r.started_at or utcnow()),
         bool(r.preempt_requested), r.worker or "")
        for r in rows
    ]  # fmt: skip


def queued_counts(session: Session, kind: str) -> dict[str, int]:
    """The queued (not cancelled) jobs of ``kind`` by team: one grouped read.

    A team's count is all :func:`jobs.fairshare.preemption_victims` needs; the store counts
    its tens of thousands of queued jobs itself and hands over one row per team.
    """
    rows = session.execute(
        select(Job.team_id, func.count())
        .where(
            Job.queue == kind,
            Job.status == JobStatus.QUEUED,
            Job.cancel_requested.is_(False),
        )
        .group_by(Job.team_id)
    )
    return {str(t): int(n) for t, n in rows}


def _victims(session: Session, kind: str, policy: Policy) -> list[uuid.UUID]:
    """The running jobs that should yield now (none while one asked before still runs)."""
    running = running_jobs(session, kind)
    if any(asked for _, asked, _ in running):
        return []
    alive = live_workers(session, policy, kind=kind)
    busy = {w for _, _, w in running}
    return fairshare.preemption_victims(
        team_loads(session, kind, policy),
        queued_counts(session, kind),
        [r for r, _, _ in running],
        idle_workers=len(set(alive) - busy),
        started_before=utcnow() - timedelta(seconds=policy.preempt_min_run_s),
    )


def takes_pass_turn(
    session: Session, kind: str, name: str, policy: Policy, period_s: float, *, at: float
) -> bool:
    """Whether worker ``name`` makes ``kind``'s preemption decision in this period.

    Every worker's reaper passes once per ``period_s``, but the pool needs one decision per
    period, not one per worker (200 workers made 20 a second, each counting the queue).
    The live workers of the kind take turns by time slot: slot ``floor(at / period_s)`` is
    the turn of the live worker at that position in name order, and each worker, passing
    once a period, meets each slot about once. A worker the store does not list as live for
    ``kind`` (one that consumes several kinds beats under the last of them) decides each
    time, as every worker did before.

    Args:
        session: the pass's session.
        kind: the queue kind, ``cpu`` or ``gpu``.
        name: this worker's name.
        policy: how long a worker counts as alive.
        period_s: the reapers' period (``reap_every_s``), the length of a turn.
        at: the time in seconds since the epoch (the workers' shared clock).
    """
    live = sorted(live_workers(session, policy, kind=kind))
    if name not in live:
        return True
    return live[int(at // period_s) % len(live)] == name


def request_preemptions(session: Session, kind: str, policy: Policy) -> list[uuid.UUID]:
    """Ask the running jobs :func:`jobs.fairshare.preemption_victims` names to yield.

    One request at a time per kind: while a job asked to stop is still running, nothing
    more is asked (its worker is about to go to the starved team). The job sees the request
    in its next heartbeat, checkpoints and goes back to the queue (``release_job``).

    The pass decides twice. First without the kind's lock: every worker passes every
    ``reap_every_s`` (20 passes a second from 200 workers), and the lock taken alone stops
    every claim of the kind until commit, so the usual answer, nothing to move, must not
    take it. Only when that read names victims does the pass take the lock and decide again
    on what the claims in flight have committed; the second decision is the one applied.

    Returns:
        The jobs asked to stop in this pass.
    """
    if not policy.preemption or not _victims(session, kind, policy):
        return []
    lock_kind(session, kind)
    victims = _victims(session, kind, policy)
    if victims:
        session.execute(
            update(Job)
            .where(Job.id.in_(victims), Job.status == JobStatus.RUNNING)
            .values(preempt_requested=True)
        )
    return victims


def beat_worker(session: Session, name: str, queue: str) -> None:
    """Record that worker ``name`` (of queue kind ``queue``) is alive now."""
    now = utcnow()
    res = rows_changed(
        session, update(Worker).where(Worker.name == name).values(last_seen=now, queue=queue)
    )
    if res == 0:
        session.add(Worker(name=name, queue=queue, started_at=now, last_seen=now))
        session.flush()


def drop_worker(session: Session, name: str) -> None:
    """Forget worker ``name`` (it is shutting down)."""
    session.execute(delete(Worker).where(Worker.name == name))


def live_workers(
    session: Session, policy: Policy, *, kind: str | None = None
) -> dict[str, datetime]:
    """Workers seen within ``policy.worker_alive_s``, with when they were last seen.

    A worker running a job counts too (its lease is its heartbeat), so a worker whose beat
    is late, or the embedded executor, which does not beat, is not taken for gone.
    """
    now = utcnow()
    q = select(Worker.name, Worker.last_seen).where(
        Worker.last_seen > now - timedelta(seconds=policy.worker_alive_s)
    )
    if kind is not None:
        q = q.where(Worker.queue == kind)
    out = {name: seen for name, seen in session.execute(q)}
    r = select(Job.worker).where(Job.status == JobStatus.RUNNING, Job.worker.is_not(None))
    if kind is not None:
        r = r.where(Job.queue == kind)
    for name in session.scalars(r):
        if name is not None:
            out.setdefault(name, now)
    return out
