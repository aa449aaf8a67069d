"""A running search member's stop checks: its study's pruner, and a stalled outer loop.

:class:`PruneCheck` runs on the trace writer's thread after each batch it commits: it reads
the study's trials and their stored traces (the outer loss at every hyper-iteration) and
asks :func:`jobs.studies.search.pruning.should_prune`. The training loop stops at its next
hyper-iteration boundary and the job ends ``pruned``, its trace kept. :class:`Stall` is the
hypergradient-aware stop (``outer.stop_when_stalled``): over its window, neither the outer
loss nor the hypergradient's norm moved by more than the tolerance, relative to their size;
the job ends ``succeeded``, as converged.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections import deque
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from jobs.store import repo
from jobs.studies.search.advance import trials_of
from jobs.studies.search.pruning import should_prune, step_fields
from jobs.studies.search.space import SearchSpec

__all__ = ["PruneCheck", "Stall"]

log = logging.getLogger(__name__)


class PruneCheck:
    """Whether this member's study prunes it now (reads the store; no writes)."""

    def __init__(self, sessions: sessionmaker[Session], study_id: uuid.UUID, job_id: uuid.UUID,
                 search: SearchSpec):  # fmt: skip
        self.sessions, self.study_id, self.job_id, self.search = sessions, study_id, job_id, search

    @classmethod
    def of(cls, sessions: sessionmaker[Session], job_id: uuid.UUID) -> PruneCheck | None:
        """The check of ``job_id``, or ``None`` when it is no member of a pruned search."""
        with sessions() as s:
            study = repo.study_of_job(s, job_id)
            if study is None or study.search is None or not study.search.get("pruner"):
                return None
            return cls(sessions, study.id, job_id, SearchSpec.model_validate(study.search))

    def __call__(self) -> bool:
        with self.sessions() as s:
            study = repo.get_study_any(s, self.study_id)
            if study is None:
                return False
            rows = repo.study_members(s, self.study_id)
            trials = trials_of(study, rows)
            jobs = {m.position: j.id for m, j in rows}
            traces = repo.member_traces(s, list(jobs.values()), step_fields(self.search))
        current = None
        for t in trials:
            job_id = jobs.get(t.number)
            t.intermediate = traces.get(job_id, {}) if job_id is not None else {}
            if job_id == self.job_id:
                current = t
        return current is not None and should_prune(self.search, trials, current)


class Stall:
    """``outer.stop_when_stalled``: the outer loss and the hypergradient norm stood still.

    The outer loss has stalled when its relative change over the window,
    ``(max - min) / max(|max|, |min|)``, is at most ``tolerance``; the hypergradient norm
    when its own is too, or when it has fallen below ``tolerance`` times its first value (a
    norm that decays to zero never stands still relative to itself). A flat loss with a
    hypergradient still moving is a plateau the run may leave, and is not stopped.

    Args:
        window: hyper-iterations both must have stood still over.
        tolerance: the largest relative change.
    """

    def __init__(self, window: int, tolerance: float):
        self.tolerance = tolerance
        self.losses: deque[float] = deque(maxlen=window)
        self.norms: deque[float] = deque(maxlen=window)
        self.first_norm: float | None = None

    def _still(self, xs: deque[float]) -> bool:
        if len(xs) < (xs.maxlen or 0) or not all(math.isfinite(x) for x in xs):
            return False
        hi, lo = max(xs), min(xs)
        scale = max(abs(hi), abs(lo), 1e-12)
        return (hi - lo) / scale <= self.tolerance

    def __call__(self, record: dict[str, Any]) -> bool:
        """Take a hyper-iteration's record; whether both have stalled over the window."""
        self.losses.append(float(record["outer_loss"]))
        norm = float(record.get("grad_norm", math.nan))
        self.norms.append(norm)
        if self.first_norm is None and math.isfinite(norm):
            self.first_norm = norm
        small = self.first_norm is not None and 0 <= norm <= self.tolerance * self.first_norm
        full = len(self.norms) == self.norms.maxlen
        return self._still(self.losses) and (self._still(self.norms) or (full and small))
