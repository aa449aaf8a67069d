"""The chaos soak's history: what the clients saw and what the workers claimed, over time,
and the invariants checked over all of it.

The store-level checks (:mod:`benchmarks.service._chaos_checks`) look at the end state; a
service can end well and still have shown something impossible on the way (a job that was
``succeeded`` and then ``running`` again, a trace point read with one value and later with
another, two workers holding one job). This module records, while the faults happen:

- every job state a client was answered with (``GET /v1/jobs`` and ``GET /v1/jobs/{id}``),
  as the interval from the request's start to its answer, with the status and attempts;
- every trace value a client read, by job and iteration;
- the running and queued jobs of each team, sampled from the store;

and afterwards reads every claim the workers made from ``job_events`` (a claim writes its
event in the claim's own transaction, so the table is the claims' record). Two observations
are ordered only when one was answered before the other was sent: concurrent requests may
be served in either order, so they constrain nothing (the order of a linearizable history).

Each check returns ``(checked, violations)`` like the store checks.
"""

from __future__ import annotations

import math
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jobs.status import TERMINAL, JobStatus

__all__ = [
    "Claim",
    "History",
    "Seen",
    "attempts_grow",
    "claims_exclusive",
    "fair_shares",
    "jain",
    "terminal_final",
    "trace_values",
]

Result = tuple[int, list[str]]


@dataclass(frozen=True)
class Seen:
    """One job state a client was answered with: sent at ``start``, answered at ``end``
    (monotonic seconds of the soak's process)."""

    start: float
    end: float
    job: str
    status: str
    attempts: int


@dataclass(frozen=True)
class Claim:
    """One row of ``job_events``, in the store's order (``seq``)."""

    seq: int
    job: str
    at: float  # seconds since the epoch, the writing process's clock
    old: str | None
    new: str
    attempt: int
    worker: str | None


@dataclass
class History:
    """What the soak's clients observed; shared by their threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    seen: list[Seen] = field(default_factory=list)
    # (job, iteration) -> every outer loss read for it (None: stored as NULL, a NaN)
    values: dict[tuple[str, int], set[float | None]] = field(
        default_factory=lambda: defaultdict(set)
    )
    # (seconds, {team: (running, queued)})
    shares: list[tuple[float, dict[str, tuple[int, int]]]] = field(default_factory=list)

    def jobs(self, start: float, end: float, rows: Iterable[Mapping[str, Any]]) -> None:
        """Record the jobs of one answer (a list page or a single job)."""
        with self.lock:
            for r in rows:
                self.seen.append(Seen(start, end, str(r["id"]), r["status"], int(r["attempts"])))

    def trace(self, job: str, iterations: Sequence[int], losses: Sequence[float | None]) -> None:
        """Record one trace read's outer losses."""
        with self.lock:
            for it, v in zip(iterations, losses, strict=True):
                self.values[(job, int(it))].add(_value(v))

    def sample(self, t: float, counts: Mapping[str, tuple[int, int]]) -> None:
        """Record each team's ``(running, queued)`` jobs at ``t``."""
        with self.lock:
            self.shares.append((t, dict(counts)))


def _value(v: float | None) -> float | None:
    # a NaN is stored as NULL and read back as null: one value, however it arrives
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _by_job(seen: Iterable[Seen]) -> dict[str, list[Seen]]:
    out: dict[str, list[Seen]] = defaultdict(list)
    for s in seen:
        out[s.job].append(s)
    return out


def terminal_final(seen: Sequence[Seen]) -> Result:
    """No job leaves a terminal state: once a client was answered that a job ended, every
    answer to a request sent after that shows the same terminal status."""
    bad = []
    for job, obs in _by_job(seen).items():
        ended = [s for s in obs if s.status in TERMINAL]
        if not ended:
            continue
        first = min(ended, key=lambda s: s.end)
        later = [s for s in obs if s.start > first.end and s.status != first.status]
        if later:
            s = min(later, key=lambda s: s.start)
            bad.append(f"job {job}: {first.status} at {first.end:.2f} s, then {s.status} "
                       f"in an answer to a request sent at {s.start:.2f} s")  # fmt: skip
    return len(seen), bad


def attempts_grow(seen: Sequence[Seen]) -> Result:
    """A job's attempts never go down between two answers one after the other."""
    bad = []
    for job, obs in _by_job(seen).items():
        by_end = sorted(obs, key=lambda s: s.end)
        i, most, most_at = 0, -1, 0.0
        for s in sorted(obs, key=lambda s: s.start):
            while i < len(by_end) and by_end[i].end < s.start:  # answered before s was sent
                if by_end[i].attempts > most:
                    most, most_at = by_end[i].attempts, by_end[i].end
                i += 1
            if s.attempts < most:
                bad.append(
                    f"job {job}: attempt {most} seen at {most_at:.2f} s, then "
                    f"attempt {s.attempts} in a request sent at {s.start:.2f} s"
                )
                break
    return len(seen), bad


def trace_values(
    values: Mapping[tuple[str, int], set[float | None]],
    stored: Mapping[tuple[str, int], float | None],
) -> Result:
    """A trace point is never rewritten with another value: every read of a job's iteration
    gave one value, the one stored at the end (a resumed job writes the points past its
    checkpoint again, and exact resume makes them the same bits)."""
    bad = []
    for (job, it), vals in values.items():
        final = _value(stored[(job, it)]) if (job, it) in stored else "missing"
        if len(vals) > 1 or final not in vals:
            bad.append(f"job {job} iteration {it}: read {sorted(vals, key=str)}, stored {final}")
    return len(values), bad


def claims_exclusive(events: Sequence[Claim]) -> Result:
    """Over every job's events in the store's order: a claim (``queued -> running``) takes a
    queued job, names a worker, and its attempt is one more than the last (attempts only
    grow); a job is held by one worker from its claim until it leaves ``running``, so no two
    workers hold it at once and no attempt is claimed twice; no event leaves a terminal state.
    Returns the claims checked."""
    per_job: dict[str, list[Claim]] = defaultdict(list)
    for e in sorted(events, key=lambda e: e.seq):
        per_job[e.job].append(e)
    bad, claims = [], 0
    for job, evs in per_job.items():
        state: str | None = None
        attempt, held_since = 0, 0.0
        for e in evs:
            where = f"job {job} event {e.seq} ({e.old} -> {e.new})"
            if state in TERMINAL:
                bad.append(f"{where}: after the terminal {state}")
            if e.old != state:
                bad.append(f"{where}: the job was {state}")
            if e.new == JobStatus.RUNNING:
                claims += 1
                if e.attempt != attempt + 1:
                    bad.append(f"{where}: attempt {e.attempt} after attempt {attempt}")
                if not e.worker:
                    bad.append(f"{where}: a claim naming no worker")
                attempt, held_since = max(attempt, e.attempt), e.at
            elif state == JobStatus.RUNNING and e.at < held_since:
                bad.append(f"{where}: released at {e.at:.3f}, before its claim at "
                           f"{held_since:.3f}")  # fmt: skip
            state = e.new
    return claims, bad


def jain(x: Sequence[float]) -> float:
    """Jain's fairness index ``(sum x)^2 / (n sum x^2)``: 1 when all are equal, ``1/n`` when
    one has everything; 1 for no values or all zero (nothing to be unfair about)."""
    sq = sum(v * v for v in x)
    return 1.0 if not x or sq == 0 else sum(x) ** 2 / (len(x) * sq)


def fair_shares(
    shares: Sequence[tuple[float, Mapping[str, tuple[int, int]]]],
    weights: Mapping[str, float],
    limits: Mapping[str, int],
    *,
    bound: float,
    min_samples: int = 20,
) -> tuple[int, list[str], dict[str, Any]]:
    """Running shares under faults against the weights, while every team is backlogged.

    Over the samples in which every team had queued work, each team's mean running jobs
    are compared with its weighted fair share of the jobs running then, in whole jobs and
    capped at its running limit (:func:`_round_robin`: with weights 3:1, two running jobs
    are one each, three are two and one).
    The check is Jain's index of ``mean running / mean fair share`` over the teams, at
    least ``1 - bound``. With fewer than ``min_samples`` backlogged samples (a short run)
    the figures are reported and nothing is checked.

    Returns ``(samples checked, violations, figures)``.
    """
    teams = sorted(weights)
    got = dict.fromkeys(teams, 0.0)
    fair = dict.fromkeys(teams, 0.0)
    n = 0
    for _, counts in shares:
        if not all(counts.get(t, (0, 0))[1] > 0 for t in teams):
            continue
        n += 1
        total = sum(counts.get(t, (0, 0))[0] for t in teams)
        for t, v in _round_robin(total, weights, limits).items():
            fair[t] += v
            got[t] += counts.get(t, (0, 0))[0]
    if n == 0:
        return 0, [], {"backlogged_samples": 0}
    ratio = [got[t] / fair[t] if fair[t] else 1.0 for t in teams]
    index = round(jain(ratio), 4)
    figures: dict[str, Any] = {
        "backlogged_samples": n,
        "mean_running": {t: round(got[t] / n, 3) for t in teams},
        "mean_fair_share": {t: round(fair[t] / n, 3) for t in teams},
        "jain": index,
    }
    if n < min_samples:
        return 0, [], figures
    bad = []
    if index < 1 - bound:
        bad.append(
            f"Jain's index of running over fair share {index} < {1 - bound}: "
            f"running {figures['mean_running']}, fair {figures['mean_fair_share']}"
        )
    return n, bad, figures


def _round_robin(
    total: int, weights: Mapping[str, float], limits: Mapping[str, int]
) -> dict[str, int]:
    """``total`` running slots dealt one at a time to the team of least load (running over
    weight; ties: the larger weight, then the name), none above its limit: the allocation
    weighted fair share aims at in whole jobs (``jobs.fairshare``; written out again here so
    that the soak checks the pool against the rule, not against its own code)."""
    share = dict.fromkeys(weights, 0)
    for _ in range(total):
        open_ = [t for t in weights if share[t] < limits[t]]
        if not open_:
            break
        t = min(open_, key=lambda t: (share[t] / weights[t], -weights[t], t))
        share[t] += 1
    return share


def stored_values(session: Any, jobs: Iterable[str]) -> dict[tuple[str, int], float | None]:
    """The stored outer losses of ``jobs``, by ``(job, iteration)``."""
    from sqlalchemy import select

    from jobs.store.models import TracePoint

    ids = [uuid.UUID(j) for j in set(jobs)]
    out: dict[tuple[str, int], float | None] = {}
    for i in range(0, len(ids), 500):
        q = select(TracePoint.job_id, TracePoint.iteration, TracePoint.outer_loss).where(
            TracePoint.job_id.in_(ids[i : i + 500])
        )
        for job_id, it, loss in session.execute(q):
            out[(str(job_id), it)] = loss
    return out


def claim_events(session: Any) -> list[Claim]:
    """Every ``job_events`` row, as :class:`Claim`."""
    from sqlalchemy import select

    from jobs.store.models import JobEvent

    q = select(JobEvent.id, JobEvent.job_id, JobEvent.at, JobEvent.from_status,
               JobEvent.to_status, JobEvent.attempt, JobEvent.detail)  # fmt: skip
    return [
        Claim(seq, str(job), at.timestamp(), old, new, attempt, (detail or {}).get("worker"))
        for seq, job, at, old, new, attempt, detail in session.execute(q)
    ]
