"""How long a job will run and how long a running one has left: the pool's estimated starts.

The pool view (``GET /v1/pool``) lists each queued job with the seconds until it should
start: the queue, in the order the claims take it, list-scheduled on the live workers
(:func:`jobs.fairshare.estimated_starts` does it job by job; :class:`FreeWorkers` answers
for one job from the number and expected length of the jobs ahead of it, which the view
counts without reading the queue). This module gives it its two inputs:

- each worker's time until it is free: a running job's ETA as its last flush wrote it, less
  the seconds since (:func:`remaining_s`); before its first flush, its expected running time
  less the time it has run;
- each queued job's expected running time (:func:`expected_run_s`): the median of recent
  successes of the same shape (problem kind, inner steps, outer iterations); else the
  median rate per inner step and hyper-iteration of recent successes times the job's own
  count; else a default. A job's running time scales with ``T x iterations`` for one problem,
  so a queue of long jobs behind short ones is not taken for short.

Pure: no database, no clock (the callers pass ages and elapsed times).
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_RUN_S",
    "FLUID_AHEAD_PER_WORKER",
    "Finished",
    "FreeWorkers",
    "Shape",
    "expected_run_s",
    "remaining_s",
]

#: a job's expected running time before any job has succeeded
DEFAULT_RUN_S = 60.0


@dataclass(frozen=True)
class Shape:
    """What a job's running time depends on, read from its spec."""

    problem: str
    steps: int
    iterations: int

    @property
    def work(self) -> int:
        """Inner steps times hyper-iterations (at least 1)."""
        return max(1, self.steps) * max(1, self.iterations)

    @classmethod
    def of(cls, spec: Mapping[str, Any]) -> Shape:
        """The shape of a job spec (as stored; a field it lacks counts as 1)."""
        problem = spec.get("problem") or {}
        steps = (spec.get("inner") or {}).get("steps") or 1
        iterations = (spec.get("outer") or {}).get("iterations") or 1
        return cls(str(problem.get("kind", "")), int(steps), int(iterations))


@dataclass(frozen=True)
class Finished:
    """A job that succeeded: its shape and its running time (claim to success)."""

    shape: Shape
    run_s: float


def expected_run_s(
    shape: Shape, history: Sequence[Finished], default: float = DEFAULT_RUN_S
) -> float:
    """The expected running time of a job of ``shape`` from recent successes.

    Args:
        shape: the job's.
        history: recent successes of its queue kind (any order).
        default: the answer without any history.

    Returns:
        The median running time of the successes of the same shape; without one, the
        median seconds per unit of :attr:`Shape.work` of those of the same problem (else of
        all of them) times the job's work; without any, ``default``.
    """
    same = [f.run_s for f in history if f.shape == shape]
    if same:
        return statistics.median(same)
    kin = [f for f in history if f.shape.problem == shape.problem] or list(history)
    if not kin:
        return default
    return statistics.median(f.run_s / f.shape.work for f in kin) * shape.work


def remaining_s(
    *, expected_s: float, elapsed_s: float, eta_s: float | None, eta_age_s: float
) -> float:
    """Seconds until a running job ends.

    Args:
        expected_s: its expected running time (:func:`expected_run_s`), used before it has
            reported an ETA.
        elapsed_s: how long its attempt has run.
        eta_s: the ETA its last flush wrote (``None`` before its first).
        eta_age_s: seconds since that flush.

    Returns:
        ``eta_s - eta_age_s``, or ``expected_s - elapsed_s`` without an ETA; never below 0.
    """
    left = eta_s - eta_age_s if eta_s is not None else expected_s - elapsed_s
    return max(0.0, left)


#: beyond this many jobs ahead per busy worker, :meth:`FreeWorkers.start_s` answers from
#: the drain time alone (off by at most 1 / (2 x this) of the wait, and O(1) instead of O(workers))
FLUID_AHEAD_PER_WORKER = 4


@dataclass(frozen=True)
class FreeWorkers:
    """A kind's live workers by when each is free: when the job with given work ahead starts.

    :func:`jobs.fairshare.estimated_starts` schedules every queued job on the workers in
    turn; at tens of thousands of queued jobs the pool view cannot read them all. This
    answers for one job from what is ahead of it only: ``k`` jobs of ``W`` expected seconds
    in all (their teams' queued shapes, :func:`expected_run_s`), as if each took the mean
    ``d = W / k``. With equal lengths list scheduling starts jobs at the merged times
    ``free_i + n d``, and the job's start ``S`` is the ``k+1``-th of them; the workers
    drain ``W`` at the time ``T`` where ``sum_i max(0, T - free_i) = W``, and
    ``T - d <= S <= T``, so only the times in that window are looked at. Far down the queue
    (more than :data:`FLUID_AHEAD_PER_WORKER` jobs per busy worker ahead) it is
    ``T - d (1 - 1/i) / 2`` for ``i`` busy workers, the window's expected place.
    """

    free_in_s: Sequence[float]
    _free: list[float] = field(init=False, repr=False)
    _drained: list[float] = field(init=False, repr=False)  # work done when each is free
    _sums: list[float] = field(init=False, repr=False)  # free times of the ones before

    def __post_init__(self) -> None:
        free = sorted(max(0.0, f) for f in self.free_in_s)
        sums = [0.0]
        for f in free:
            sums.append(sums[-1] + f)
        object.__setattr__(self, "_free", free)
        object.__setattr__(self, "_drained", [i * f - sums[i] for i, f in enumerate(free)])
        object.__setattr__(self, "_sums", sums)

    def start_s(self, jobs_ahead: int, work_ahead_s: float) -> float | None:
        """Seconds until a job starts behind ``jobs_ahead`` jobs of ``work_ahead_s`` in all.

        Returns:
            The estimate; ``None`` without a live worker.
        """
        free = self._free
        if not free:
            return None
        if jobs_ahead <= 0 or work_ahead_s <= 0:
            return free[min(max(0, jobs_ahead), len(free) - 1)]
        d = work_ahead_s / jobs_ahead
        busy = max(1, bisect.bisect_left(self._drained, work_ahead_s))
        drained = (work_ahead_s + self._sums[busy]) / busy
        if jobs_ahead > FLUID_AHEAD_PER_WORKER * busy:
            return drained - d * (1 - 1 / busy) / 2
        # each busy worker's starts in (T - 2d, T + d] (the window, and a job's length
        # either side of T against rounding), and how many it starts before them
        near, before = [], 0
        for f in free[:busy]:
            n = max(1, math.floor((drained - f) / d))
            near += [f + (n - 1) * d, f + n * d, f + (n + 1) * d]
            before += n - 1
        near.sort()
        return near[min(len(near) - 1, max(0, jobs_ahead - before))]
