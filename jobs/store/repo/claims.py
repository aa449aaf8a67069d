"""The fair-share claim: a free worker takes the queued job :mod:`jobs.fairshare` picks.

On SQLite (the embedded store, one writer at a time anyway) the claim reads the queue heads
and team loads, asks :func:`jobs.fairshare.pick_next` and takes that job, serialised.

On PostgreSQL claims run side by side. Serialising every claim of a kind behind one lock
held for the whole claim (read, pick, update, commit) bounded the pool at one claim per
claim time: ~30 claims/s and a p99 near a second with 200 workers in
``benchmarks.service.scale``, every waiting worker queued behind the lock. Instead a claim
is one call of the server-side function ``bilevel_claim`` (migration 0020): the steps below
were a dozen statements from Python, and building, sending and decoding them was most of a
claim's CPU: 5.4-5.9 ms a claim (client and backend), 2.4-2.7 ms as one call
(``benchmarks.service.claim_cpu``; the pool-at-scale guide).

1. **Snapshot, no lock**: one statement reads each team with queued work: its weight and
   limit, its running jobs, its first :data:`HEADS` queued jobs.
2. **Turns**: ``bilevel_claim_turns`` turns the snapshot into the next :data:`TURNS` picks,
   each a *turn* ``(team, running count the team has when its turn comes)``, below the
   team's limit. It is :func:`jobs.fairshare.pick_order` in closed form: a team's ``k``-th
   pick has the key ``((running + k) / weight, -weight, team)``, and the picks are the keys
   merged (``tests/jobs/test_claim_function.py`` compares the two on random snapshots;
   :func:`_turns` is the same turns read and ordered in Python, the reference).
3. **Team lock, tried**: ``pg_try_advisory_xact_lock`` on the team (held to commit). Claims
   of one team are serialised, claims of different teams are not. A team being claimed by
   another worker has its first turn here left to that worker; its *next* turn is this
   claim's, so the claim waits for the team's lock and takes it. Passing it over for a
   later turn of another team would give that team a job out of its share: at weights 3:1
   with two of four workers free, two claims at once must both go to the 3-team, not one
   to each (``tests/e2e/test_fair_share_weights.py`` caught exactly that).
4. **Fresh count, guarded take** (``bilevel_claim_take``): under the team's lock a new
   statement recounts the team's running jobs; only if that count is at most the turn's
   (else another worker took this turn since the snapshot: next turn) and below the
   team's limit, the team's head job (``FOR UPDATE SKIP LOCKED``) gets the guarded update
   of :func:`jobs.store.repo.lifecycle.claim_update` and its job event.

Why this keeps the guarantees:

- *limits*: every claim of a team holds the team's lock until it commits and counts the
  team's running jobs after taking it (a new statement, so it sees every earlier claim of
  the team committed); jobs ending meanwhile only lower the count. A team never runs more
  than its limit.
- *no job twice*: the take is the conditional ``status = 'queued'`` update as before (a
  duplicate delivery claims nothing), so fencing and exact resume are untouched.
- *fair order*: one claimer alone takes turn 0 of a fresh snapshot, which is exactly
  :func:`~jobs.fairshare.pick_next`'s choice (the tests check it); ``k`` claimers at once take
  the first ``k`` turns, which is what ``k`` successive claims would take. A turn is the
  team's ``n``-th running job, not "the team": a stale snapshot's turn that another worker
  already filled fails the count check instead of giving the team one more.
- *preemption*: a pass takes the kind's lock alone (:func:`~jobs.store.repo.scheduling.lock_kind`),
  claims take it shared first thing, so a pass sees no claim half done.

When every turn's team was busy (and this claim holds no team lock) it waits for the first
one's lock: what one team's claims do when only that team has work. It never waits while it
holds another team's lock, from this snapshot or an earlier one (the locks last until
commit), so two claims cannot wait for each other (a claim that holds one
passes over a busy team's later turns, the old approximation, only after a stale turn).
"""

from __future__ import annotations

import uuid
import zlib
from collections import Counter
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, NamedTuple

from sqlalchemy import Select, String, Uuid, bindparam, func, literal, select, text
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from jobs import fairshare
from jobs.fairshare import Candidate, TeamLoad
from jobs.status import JobStatus, QueueKind
from jobs.store.base import UTCDateTime
from jobs.store.models import Job, Team, utcnow
from jobs.store.repo.lifecycle import Claim, cancel_if_requested, claim_job
from jobs.store.repo.scheduling import (
    Policy,
    kind_lock_key,
    lock_kind,
    queued_candidates,
    team_loads,
)

__all__ = ["HEADS", "TURNS", "claim_next"]

#: queued jobs read per team: a team can have this many turns among the next ones
HEADS = 3
#: turns computed per snapshot: more than the claims that are ever in flight at once
TURNS = 24
#: snapshots a claim reads before it says "nothing to take" (each only when all its turns
#: were taken by others meanwhile)
_ROUNDS = 3


class Turn(NamedTuple):
    """A team's next job as the pick order places it: taken if the team still has ``before``."""

    team: uuid.UUID
    before: int  # the team's running jobs when this turn comes
    limit: int


def claim_next(
    session: Session,
    kind: str,
    worker: str,
    lease_s: float,
    policy: Policy,
    *,
    hint: uuid.UUID | None = None,
) -> Claim | bool:
    """Claim the queued job of ``kind`` that weighted fair share picks.

    Call it in its own transaction and commit soon: the locks it takes are held until
    commit. ``hint`` is the job the broker message named; if a cancel was requested for it
    while queued, it ends ``cancelled`` here (as a direct claim of it would have done).

    Returns:
        The claim; ``True`` when jobs are queued but every team holding them is at its
        running limit (they wait for a job of theirs to stop); ``False`` when nothing of
        ``kind`` is queued.
    """
    if session.get_bind().dialect.name != "postgresql":
        if hint is not None:
            cancel_if_requested(session, hint)
        return _claim_serialised(session, kind, worker, lease_s, policy)
    now = utcnow()
    row = session.execute(
        _CLAIM,
        {
            "kind": kind,
            "worker": worker,
            "now": now,
            "lease_until": now + timedelta(seconds=lease_s),
            "hint": hint,
            "weight": policy.default_weight,
            "limit": policy.limit_of(kind, None, None),
            "gpu": kind == QueueKind.GPU,
            "kind_lock": kind_lock_key(kind),
            "space": _team_space(kind),
            "heads": HEADS,
            "turns": TURNS,
            "rounds": _ROUNDS,
        },
    ).one()
    if row.job_id is None:
        return bool(row.waiting)
    return Claim(job_id=row.job_id, attempt=row.attempt, worker=worker)


#: the claim on PostgreSQL: migration 0020's ``bilevel_claim`` (casts: psycopg sends a
#: Python int as the smallest integer type that holds it, the function wants its own)
_CLAIM = text(
    "SELECT job_id, attempt, waiting FROM bilevel_claim(CAST(:kind AS text),"
    " CAST(:worker AS text), :now, :lease_until, CAST(:hint AS uuid), CAST(:weight AS float8),"
    " CAST(:limit AS integer), :gpu, CAST(:kind_lock AS bigint), CAST(:space AS integer),"
    " CAST(:heads AS integer), CAST(:turns AS integer), CAST(:rounds AS integer))"
).bindparams(
    bindparam("now", type_=UTCDateTime()),
    bindparam("lease_until", type_=UTCDateTime()),
    bindparam("hint", type_=Uuid()),
)


def _claim_serialised(
    session: Session, kind: str, worker: str, lease_s: float, policy: Policy
) -> Claim | bool:
    """The embedded store's claim: read, :func:`~jobs.fairshare.pick_next`, take, in turn."""
    lock_kind(session, kind)
    queued = queued_candidates(session, kind)
    if not queued:
        return False
    chosen = fairshare.pick_next(team_loads(session, kind, policy), queued)
    if chosen is None:
        return True
    # writers are serialised: the chosen row is queued unless it was cancelled in between,
    # and the next message takes the next job
    return claim_job(session, chosen.id, worker, lease_s) or True


def _turns(session: Session, kind: str, policy: Policy) -> list[Turn] | None:
    """The next :data:`TURNS` picks below their team's limit; ``None``: nothing queued.

    The order of the teams' turns depends on their loads, limits and how many jobs each has
    queued, not on which jobs (a team's own order is taken under its lock), so the snapshot
    is one row per team with work: no job rows, no timestamps to decode (Python's time per
    claim counts as much as the database's on a small machine).
    """
    rows = session.execute(_snapshot_query(kind)).all()
    if not rows:
        return None
    loads: dict[str, TeamLoad] = {}
    ids: dict[str, uuid.UUID] = {}
    lines: list[Candidate[None]] = []
    for team, weight, cpu, gpu, running, queued in rows:
        name = str(team)
        ids[name] = team
        loads[name] = TeamLoad(policy.weight_of(weight), running, policy.limit_of(kind, cpu, gpu))
        lines += [Candidate(None, name, 0, _EPOCH)] * queued
    taken: Counter[str] = Counter()
    out = []
    for c in fairshare.pick_order(loads, lines, first=TURNS):
        load = loads[c.team]
        before = load.running + taken[c.team]
        taken[c.team] += 1
        if before < load.limit:  # past its limit a team's picks are only its place in line
            out.append(Turn(ids[c.team], before, load.limit))
    return out


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: a team's own order (priority, then age): :func:`jobs.fairshare.pick_next`'s within a team
_TEAM_ORDER = (Job.priority.desc(), Job.created_at, Job.id)


def _const(value: str) -> ColumnElement[str]:
    """``value`` written into the statement's text, not sent as a parameter.

    The statements here are built once and prepared (psycopg prepares a statement run five
    times); a prepared statement may be planned once for any parameters (a generic plan),
    and then ``status = $1`` cannot use ``ix_jobs_queued_head`` (partial: ``status =
    'queued'``): measured, the snapshot took 23 ms with a generic plan against 0.8 ms.
    """
    return literal(value, String(), literal_execute=True)


@cache
def _snapshot_query(kind: str) -> Select[Any]:
    """Each team with queued jobs of ``kind``: its row's policy, running and queued (capped).

    The queued count probes ``ix_jobs_queued_head`` for at most :data:`HEADS` rows per team;
    the running count reads the running jobs (at most one per worker) once.
    """
    running = (
        select(Job.team_id, func.count().label("n"))
        .where(Job.queue == _const(kind), Job.status == _const(JobStatus.RUNNING))
        .group_by(Job.team_id)
        .subquery("running_now")
    )
    head = (
        select(Job.id)
        .where(
            Job.team_id == Team.id,
            Job.queue == _const(kind),
            Job.status == _const(JobStatus.QUEUED),
            Job.cancel_requested.is_(False),
        )
        .order_by(*_TEAM_ORDER)  # ix_jobs_queued_head's order: its probe, not a team's history
        .limit(HEADS)
        .correlate(Team)
        .subquery("head")
    )
    queued = select(func.count()).select_from(head).lateral("queued_head")
    return (
        select(Team.id, Team.weight, Team.max_running_cpu, Team.max_running_gpu,
               func.coalesce(running.c.n, 0), queued.c[0])
        .select_from(Team)
        .join(queued, queued.c[0] > 0)
        .outerjoin(running, running.c.team_id == Team.id)
    )  # fmt: skip


def _team_space(kind: str) -> int:
    """The first half of a team's claim lock: one space per kind (signed 32 bits).

    The second half is the team id's lower 32 bits less ``2**31``
    (``bilevel_claim_team_key``): a collision only serialises two teams.
    """
    space = zlib.crc32(f"bilevel.claim.team.{kind}".encode())
    return space - 2**32 if space >= 2**31 else space
