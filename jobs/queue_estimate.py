"""How long a job will run and how long a running one has left: the pool's estimated starts.

The pool view (``GET /v1/pool``) lists each queued job with the seconds until it should
start. :func:`jobs.fairshare.estimated_starts` schedules the queue, in the order the claims
take it, on the live workers; this module gives it its two inputs:

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

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_RUN_S", "Finished", "Shape", "expected_run_s", "remaining_s"]

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
