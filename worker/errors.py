"""The exceptions that stop a running attempt, inside the worker.

- :class:`LeaseLost`: the reaper gave the job to another attempt; this one writes nothing more.
- :class:`StoreUnavailable`: the store stayed unreachable past ``store_patience_s``.
- :class:`TimeLimitExceeded`: the job ran past its time limit; it fails, keeping its trace.
- :class:`DataMissing`: a real data set the problem reads is not in the worker's data
  directory; the job fails at once (another attempt on this worker would fail alike).

The first two never leave :func:`worker.runner.execute_job` (they become
:class:`~worker.outcome.Outcome` values); the third is recorded as the job's error.
"""

from __future__ import annotations

from pathlib import Path

import core

__all__ = ["DataMissing", "LeaseLost", "StoreUnavailable", "TimeLimitExceeded", "require_data"]


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


class DataMissing(core.ConfigurationError):
    """A problem's data set is not where the worker's ``data_dir`` setting says.

    A configuration error (so the job fails without a retry and without a traceback),
    naming the setting, the path and what was expected there.
    """


def require_data(data_dir: str | Path | None, kind: str, folder: str) -> Path:
    """``data_dir``, after checking that it holds ``folder`` (e.g. ``omniglot``).

    Raises:
        DataMissing: ``data_dir`` is unset, or has no ``folder`` in it.
    """
    if data_dir is None:
        raise DataMissing(
            f"{kind} reads {folder}/ from the worker's data directory, and the worker setting "
            "BILEVEL_DATA_DIR (data_dir) is not set"
        )
    path = Path(data_dir).expanduser()
    if not (path / folder).is_dir():
        raise DataMissing(
            f"{kind} reads {folder}/ from the worker's BILEVEL_DATA_DIR={path}, but "
            f"{path / folder} is not a directory"
        )
    return path
