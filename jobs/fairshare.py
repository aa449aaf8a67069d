"""Weighted fair share: which queued job a free worker takes, and which running job yields.

Pure functions over plain values (no database, no clock), shared by the claim query
(:mod:`jobs.store.repo.scheduling`), the pool view (queue positions, estimated starts) and the
simulator (``benchmarks/service/fair_share.py``), so that what is measured is what runs.

A team's *load* is its running jobs divided by its weight. A free worker takes a job of the
team with the smallest load among those with queued work and below their running limit
(ties: the larger weight, then the team's name), and of that team the job of highest
priority, then the oldest. Over time each backlogged team then holds a share of the workers
proportional to its weight (weighted round robin on the running counts).

Preemption moves one worker from a team ``v`` to a starved team ``s`` only when
``(r_s + 1/2) / w_s < (r_v - 1/2) / w_v``, which is exactly when the move lowers the
imbalance ``Phi = sum_t r_t^2 / w_t`` (it changes by ``(2 r_s + 1) / w_s - (2 r_v - 1) / w_v``).
``Phi`` strictly falls with every preemption, so no sequence of them cycles; in particular
``v`` can never take the worker straight back (that move needs the reverse inequality).
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import IntEnum
from typing import Generic, TypeVar

__all__ = [
    "Candidate",
    "Priority",
    "Running",
    "TeamLoad",
    "estimated_starts",
    "jobs_ahead",
    "pick_next",
    "pick_order",
    "preemption_victims",
    "should_preempt",
]

K = TypeVar("K")


class Priority(IntEnum):
    """A job's priority within its team (the spec's ``priority``); larger runs first."""

    LOW = 0
    NORMAL = 1
    HIGH = 2

    @classmethod
    def of(cls, name: str) -> Priority:
        """The priority called ``name`` (``low``, ``normal``, ``high``)."""
        return cls[name.upper()]


@dataclass(frozen=True)
class TeamLoad:
    """A team's standing in one queue kind: its weight, running jobs and running limit."""

    weight: float
    running: int
    limit: int

    def __post_init__(self) -> None:
        if not self.weight > 0:
            raise ValueError(f"weight must be > 0, got {self.weight}")

    @property
    def load(self) -> float:
        """Running jobs per unit of weight: the smaller, the further below its share."""
        return self.running / self.weight


@dataclass(frozen=True)
class Candidate(Generic[K]):
    """A queued job as the selection sees it: its id, team, priority and age."""

    id: K
    team: str
    priority: int
    created_at: datetime


@dataclass(frozen=True)
class Running(Generic[K]):
    """A running job as preemption sees it: its id, team and when its attempt started."""

    id: K
    team: str
    since: datetime


def _team_key(name: str, t: TeamLoad) -> tuple[float, float, str]:
    return (t.load, -t.weight, name)


def _job_key(c: Candidate[K]) -> tuple[int, datetime]:
    return (-c.priority, c.created_at)


def pick_next(teams: Mapping[str, TeamLoad], queued: Iterable[Candidate[K]]) -> Candidate[K] | None:
    """The job a free worker takes: weighted fair share, then priority, then age.

    Args:
        teams: every team with queued or running jobs of this kind (a team missing here
            counts as weight 1, nothing running, no limit).
        queued: the queued jobs of this kind (for each team its best one is enough).

    Returns:
        The chosen job, or ``None`` when every team with queued work is at its limit.
    """
    best: dict[str, Candidate[K]] = {}
    for c in queued:
        held = best.get(c.team)
        if held is None or _job_key(c) < _job_key(held):
            best[c.team] = c
    eligible = [
        (_team_key(name, teams.get(name, _FREE)), c)
        for name, c in best.items()
        if teams.get(name, _FREE).running < teams.get(name, _FREE).limit
    ]
    if not eligible:
        return None
    return min(eligible, key=lambda e: e[0])[1]


_FREE = TeamLoad(weight=1.0, running=0, limit=2**31)


def pick_order(
    teams: Mapping[str, TeamLoad], queued: Sequence[Candidate[K]], *, first: int | None = None
) -> list[Candidate[K]]:
    """The order in which free workers would take ``queued``, if no job ended meanwhile.

    Each pick counts as running for its team; a team at its limit waits behind the others
    (its jobs come last, in the order they would be taken as the team's jobs end). The same
    choice as :func:`pick_next` made again and again, kept in a heap of teams (each team's
    key changes only when it is picked): ``O(n log teams)`` for ``n`` queued jobs.

    ``first``: only the next ``first`` picks that free workers would take now (none past a
    team's limit), what a claim needs. Only the ``first`` least-loaded teams below their
    limits can be among them (each team ranked above a picked one was picked before it, or
    ran out of jobs, or reached its limit, all after at least one pick), so only their jobs
    are sorted: the cost grows with ``first``, not with the queue.
    """
    teams = dict(teams)
    grouped: dict[str, list[Candidate[K]]] = {}
    for c in queued:
        grouped.setdefault(c.team, []).append(c)
    if first is not None:
        open_ = [n for n in grouped if _below_limit(teams, n)]
        keep = heapq.nsmallest(first, open_, key=lambda n: _team_key(n, teams.get(n, _FREE)))
        grouped = {n: grouped[n] for n in keep}
    lines = {n: deque(sorted(js, key=_job_key)) for n, js in grouped.items()}
    heap = [(_team_key(n, teams.get(n, _FREE)), n) for n in lines]
    heapq.heapify(heap)
    at_limit: list[str] = []
    order: list[Candidate[K]] = []
    while (heap or at_limit) and (first is None or len(order) < first):
        if not heap:  # every team left is at its limit: lift the limits, keep the order
            if first is not None:  # ... unless only what can be taken now was asked for
                break
            teams = {n: replace(t, limit=2**31) for n, t in teams.items()}
            heap = [(_team_key(n, teams.get(n, _FREE)), n) for n in at_limit]
            heapq.heapify(heap)
            at_limit = []
            continue
        _, name = heapq.heappop(heap)
        t = teams.get(name, _FREE)
        if t.running >= t.limit:  # stays so until the limits are lifted: nothing ends here
            at_limit.append(name)
            continue
        order.append(lines[name].popleft())
        teams[name] = t = replace(t, running=t.running + 1)
        if lines[name]:
            heapq.heappush(heap, (_team_key(name, t), name))
    return order


def jobs_ahead(
    teams: Mapping[str, TeamLoad], queued: Mapping[str, int], team: str, n: int
) -> list[dict[str, int]]:
    """How many jobs of each team :func:`pick_order` puts before each of ``team``'s first ``n``.

    The same order without listing it: a team's ``j``-th pick (from 0) comes when its key
    ``((running + j) / weight, -weight, name)`` is the smallest, so the picks of all teams
    are the merge of each team's increasing keys, and the jobs of team ``t`` ahead of a key
    are the ``j`` whose key is below it (counted in O(1): the keys are evenly spaced). Picks
    stop at a team's limit; its rest follow every team's first round, merged again from the
    running counts the limit left. ``O(teams)`` per job instead of ``O(queue log teams)``
    for the whole order: a view of one team's jobs in a queue of 50,000 reads counts only.

    Args:
        teams: every team with queued or running jobs of this kind (as :func:`pick_order`).
        queued: each team's queued jobs of this kind (a team missing has none).
        team: the team whose jobs are placed.
        n: how many of its jobs, first to start first (more than ``queued[team]`` counts
            as ``n``).

    Returns:
        For each of the ``n`` jobs, the jobs of each team ahead of it (teams with none left
        out; the job's own team counts its earlier jobs); its place in the queue is one more
        than their sum.
    """
    counts = {t: q for t, q in queued.items() if q > 0}
    counts[team] = max(counts.get(team, 0), n)
    # per team: its key's parts, its picks before its limit, and its queued jobs
    lines = []
    for t, q in counts.items():
        load = teams.get(t, _FREE)
        lines.append((t, load.running, load.weight, min(q, max(0, load.limit - load.running)), q))
    own = teams.get(team, _FREE)
    own_first = next(first for t, _, _, first, _ in lines if t == team)
    out: list[dict[str, int]] = []
    for j in range(n):
        # the j-th pick's key, whichever round it is in (the running count grows by one a pick)
        key = _team_key(team, replace(own, running=own.running + j))
        second = j >= own_first  # after every team's first round: the rest, from the limits
        ahead = {}
        for t, running, weight, first, q in lines:
            start, size = (first, q - first) if second else (0, first)
            a = (first if second else 0) + _below(key, t, running + start, weight, size)
            if a:
                ahead[t] = a
        out.append(ahead)
    return out


def _below(key: tuple[float, float, str], name: str, running: int, weight: float, n: int) -> int:
    """How many of the keys of team ``name``'s next ``n`` picks are below ``key``.

    The load ``(running + i) / weight`` grows by ``1 / weight`` a pick: a first guess from
    the division, then corrected with the very expression :func:`_team_key` evaluates (float
    rounding at the boundary; ties are broken by weight and name).
    """
    i = min(n, max(0, math.ceil(key[0] * weight - running)))
    while i > 0 and not ((running + i - 1) / weight, -weight, name) < key:
        i -= 1
    while i < n and ((running + i) / weight, -weight, name) < key:
        i += 1
    return i


def should_preempt(starved: TeamLoad, victim: TeamLoad) -> bool:
    """Whether a worker may move from ``victim``'s team to ``starved``'s.

    ``(r_s + 1/2) / w_s < (r_v - 1/2) / w_v``: the move lowers ``sum_t r_t^2 / w_t``, so it
    can never be undone by the reverse one (see the module's docstring); ``starved`` must
    also be below its limit.
    """
    return (
        starved.running < starved.limit
        and victim.running > 0
        and (starved.running + 0.5) / starved.weight < (victim.running - 0.5) / victim.weight
    )


def preemption_victims(
    teams: Mapping[str, TeamLoad],
    queued: Mapping[str, int],
    running: Sequence[Running[K]],
    *,
    idle_workers: int,
    started_before: datetime,
) -> list[K]:
    """The running jobs to stop so that starved teams get workers, most-over-share first.

    Nothing is preempted while a worker is idle (it takes the starved job anyway). Each
    round takes the least-loaded team with queued work and the most-loaded team running
    jobs; if :func:`should_preempt` holds, that team's job that started last (and before
    ``started_before``: the minimum running time) yields, and the counts move as if the
    worker had changed hands.

    Args:
        teams: every team with queued or running jobs of this kind.
        queued: the number of queued jobs of this kind, by team. Counts, not the jobs: only
            whether a team still waits matters, and the store counts 50,000 queued jobs in
            one grouped read where handing them over one by one took the pass's time.
        running: the running jobs of this kind that were not asked to stop already.
        idle_workers: live workers of this kind holding no job.
        started_before: only attempts that started before this may be preempted.

    Returns:
        The ids of the jobs to ask to stop (empty when the pool is fair enough).
    """
    if idle_workers > 0:
        return []
    teams = dict(teams)
    waiting = dict(queued)
    movable: dict[str, list[Running[K]]] = {}
    for r in sorted(running, key=lambda r: r.since):
        if r.since < started_before:
            movable.setdefault(r.team, []).append(r)
    out: list[K] = []
    while True:
        hungry = [n for n, k in waiting.items() if k and _below_limit(teams, n)]
        donors = [n for n, jobs in movable.items() if jobs]
        if not hungry or not donors:
            return out
        s = min(hungry, key=lambda n: _team_key(n, teams.get(n, _FREE)))
        v = max(donors, key=lambda n: (teams.get(n, _FREE).load, n))
        ts, tv = teams.get(s, _FREE), teams.get(v, _FREE)
        if s == v or not should_preempt(ts, tv):
            return out
        out.append(movable[v].pop().id)  # the one that started last loses the least work
        teams[s] = replace(ts, running=ts.running + 1)
        teams[v] = replace(tv, running=tv.running - 1)
        waiting[s] -= 1


def _below_limit(teams: Mapping[str, TeamLoad], name: str) -> bool:
    t = teams.get(name, _FREE)
    return t.running < t.limit


def estimated_starts(
    order: Sequence[K], free_in_s: Sequence[float], duration_s: Mapping[K, float]
) -> dict[K, float]:
    """Seconds from now until each job of ``order`` starts, list scheduling on the workers.

    Args:
        order: queued jobs in the order they would be taken (:func:`pick_order`).
        free_in_s: for each live worker, seconds until it is free (0 when idle; a running
            job's ETA otherwise).
        duration_s: each queued job's expected running time.

    Returns:
        Each job's estimated start; empty when there is no worker to run them.
    """
    if not free_in_s:
        return {}
    heap = [max(0.0, f) for f in free_in_s]
    heapq.heapify(heap)
    out: dict[K, float] = {}
    for job in order:
        start = heapq.heappop(heap)
        out[job] = start
        heapq.heappush(heap, start + max(0.0, duration_s[job]))
    return out
