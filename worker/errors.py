"""The exceptions that stop a running attempt, inside the worker.

- :class:`LeaseLost`: the reaper gave the job to another attempt; this one writes nothing more.
- :class:`StoreUnavailable`: the store stayed unreachable past ``store_patience_s``.
- :class:`TimeLimitExceeded`: the job ran past its time limit; it fails, keeping its trace.
- :class:`Diverged`: the outer loss or hypergradient left its scale (``worker.divergence``)
  and the spec's ``outer.stop_on_divergence`` asked to stop there; it fails, keeping its trace.
- :class:`IterationStalled`: no hyper-iteration completed for ``stall_s``; the watchdog
  (``worker.watchdog``) killed the job's process and records this as the job's error.

The first two never leave :func:`worker.runner.execute_job` (they become
:class:`~worker.outcome.Outcome` values); the others are recorded as the job's error. No
torch here: the Celery tasks import this module (:mod:`worker.data_dir` holds ``DataMissing``).
"""

from __future__ import annotations

__all__ = ["Diverged", "IterationStalled", "LeaseLost", "StoreUnavailable", "TimeLimitExceeded"]


class LeaseLost(Exception):
    """The reaper gave the job to another worker: this attempt must write nothing more."""


class StoreUnavailable(Exception):
    """The store stayed unreachable past the patience: the job is left to the reaper."""


class TimeLimitExceeded(Exception):
    """The job ran past its time limit (``time_limit_s`` or the worker's ``max_job_time_s``).

    Args:
        message: what ran past which limit, echoed into the job's error.
        iteration: the last hyper-iteration completed (and kept in the trace).
    """

    def __init__(self, message: str, *, iteration: int):
        super().__init__(message)
        self.iteration = iteration


class IterationStalled(Exception):
    """No hyper-iteration completed for ``stall_s`` seconds: the job's process was killed.

    Args:
        message: how long without progress, past which setting, echoed into the job's error.
        iteration: the last hyper-iteration completed (and reported to the watchdog).
    """

    def __init__(self, message: str, *, iteration: int):
        super().__init__(message)
        self.iteration = iteration


class Diverged(Exception):
    """The run diverged and its spec says ``outer.stop_on_divergence``.

    Args:
        message: what left its scale, at which iteration, against which reference.
        iteration: the hyper-iteration flagged (kept in the trace).
    """

    def __init__(self, message: str, *, iteration: int):
        super().__init__(message)
        self.iteration = iteration
