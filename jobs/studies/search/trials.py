"""A search's trials as the store records them, and what a finished member tells its sampler.

A trial is one member: its number (the member's ``position``), the parameters suggested,
its state (``running`` until its job ends; then ``complete``, ``pruned`` or ``fail``), its
objective values (``complete`` only) and its intermediate values (the outer loss at each
hyper-iteration, from its trace). Pure Python: no Optuna, no SQL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jobs.status import JobStatus, TrialStatus
from jobs.studies.search.space import Objective
from jobs.studies.table import final_values

__all__ = [
    "STEP_FIELDS",
    "Trial",
    "best_trials",
    "dominates",
    "objective_values",
    "pareto_front",
    "trial_state",
]

#: The trace field that tracks each objective from one hyper-iteration to the next (the
#: outer loss for ``final_outer_loss``, the iteration's seconds, its peak memory).
STEP_FIELDS = {
    "final_outer_loss": "outer_loss",
    "s_per_iteration": "time_s",
    "peak_bytes": "peak_bytes",
}


@dataclass
class Trial:
    """One member as its sampler sees it."""

    number: int
    params: dict[str, Any]
    state: str = TrialStatus.RUNNING
    values: list[float] | None = None
    #: step -> one value per objective with a step field (the first: the outer loss)
    intermediate: dict[int, list[float]] = field(default_factory=dict)
    #: what the sampler wrote on the trial when it was asked (CMA-ES's optimizer state)
    sampler_attrs: dict[str, Any] = field(default_factory=dict)


def objective_values(
    summary: Mapping[str, Any] | None, objectives: Sequence[Objective]
) -> list[float] | None:
    """Each objective's value in a member's summary; ``None`` if one is missing."""
    finals = final_values(summary)
    out = []
    for o in objectives:
        v = finals.get(o.metric)
        if v is None and o.metric.startswith("metrics."):
            v = finals.get(o.metric[len("metrics.") :])
        if v is None:
            return None
        out.append(v)
    return out


def trial_state(status: str, values: list[float] | None) -> str | None:
    """The state a member's job status ends its trial in; ``None`` while it has not ended.

    A succeeded member whose summary lacks an objective counts as failed: its sampler
    cannot be told a value.
    """
    if status == JobStatus.SUCCEEDED:
        return TrialStatus.COMPLETE if values is not None else TrialStatus.FAIL
    if status == JobStatus.PRUNED:
        return TrialStatus.PRUNED
    if status in (JobStatus.FAILED, JobStatus.CANCELLED):
        return TrialStatus.FAIL
    return None


def dominates(a: Sequence[float], b: Sequence[float], signs: Sequence[float]) -> bool:
    """Whether ``a`` is no worse than ``b`` everywhere and better somewhere.

    ``signs``: +1 for an objective to minimize, -1 for one to maximize.
    """
    pairs = [(s * x, s * y) for x, y, s in zip(a, b, signs, strict=True)]
    return all(x <= y for x, y in pairs) and any(x < y for x, y in pairs)


def pareto_front(trials: Sequence[Trial], directions: Sequence[str]) -> list[Trial]:
    """The complete trials no other complete trial dominates, in trial order."""
    signs = [1.0 if d == "minimize" else -1.0 for d in directions]
    done = [t for t in trials if t.state == TrialStatus.COMPLETE and t.values is not None]
    return [
        t
        for t in done
        if not any(dominates(u.values or [], t.values or [], signs) for u in done if u is not t)
    ]


def best_trials(trials: Sequence[Trial], directions: Sequence[str]) -> list[Trial]:
    """The best complete trial (one objective; the first of equals) or the Pareto front."""
    front = pareto_front(trials, directions)
    if len(directions) > 1 or not front:
        return front
    sign = 1.0 if directions[0] == "minimize" else -1.0
    return [min(front, key=lambda t: (sign * (t.values or [0.0])[0], t.number))]
