"""The process-wide request to stop (SIGTERM): the running job checkpoints and is released.

Set once by the worker's shutdown signal (``worker.tasks``, ``bilevel serve``) and read by
the running job's callback at every hyper-iteration, so that a deploy neither waits hours
for a job nor loses it to the SIGKILL that follows a timeout.
"""

from __future__ import annotations

import threading

__all__ = ["request_shutdown", "shutdown_requested"]

# an Event, not a flag: set from a signal handler's thread, read on the training loop's
_requested = threading.Event()


def request_shutdown() -> None:
    """Preempt the running job: checkpoint it and release it to the queue."""
    _requested.set()


def shutdown_requested() -> bool:
    """Whether :func:`request_shutdown` was called in this process."""
    return _requested.is_set()
