"""The job process's last flush: the trace it holds, written before the watchdog kills it.

The watchdog (``worker.watchdog``) kills a job's process when a hyper-iteration stalls or
overruns the time limit. The records of the iterations completed since the last flush are
then only in that process's memory; killed at once, they would be lost, and the job's
``error.iteration`` (what the supervisor was told) would be ahead of its stored trace. So
the supervisor first sends ``SIGUSR2`` and waits a short grace (``flush_grace_s``): a thread
of the job process that waits for that signal hands the running job's buffered records to
its trace writer, waits until they are committed (with the job's ``iteration``, in one
fenced transaction) and exits the process.

A thread, not a signal handler: Python runs handlers on the main thread only, between
bytecodes, and the main thread is the one that hangs. The signal is blocked in every thread
(the mask is set before any is started, and threads inherit it) and taken by
``signal.sigwait`` on this one, so it is never delivered to the stuck one.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker.progress import Progress

__all__ = ["EXIT_CODE", "SIGNAL", "block", "listen", "track", "untrack"]

log = logging.getLogger(__name__)

#: what the supervisor sends to ask for the last flush
SIGNAL = signal.SIGUSR2
#: the job process's exit status after its last flush
EXIT_CODE = 75

_current: Progress | None = None


def track(run: Progress) -> None:
    """Make ``run`` the job whose records the last flush writes."""
    global _current
    _current = run


def untrack(run: Progress) -> None:
    """``run`` has ended (its writer is closed or closing): nothing to flush for it."""
    global _current
    if _current is run:
        _current = None


def block() -> None:
    """Block :data:`SIGNAL` in this thread, and so in every thread started from now on."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {SIGNAL})


def listen() -> None:
    """Start the thread that waits for :data:`SIGNAL` (after :func:`block`)."""
    threading.Thread(target=_wait, daemon=True, name="last-flush").start()


def _wait() -> None:
    signal.sigwait({SIGNAL})
    run = _current
    if run is not None:
        try:
            run.flush_before_kill()
        except BaseException:  # the kill follows anyway: say why nothing was written
            log.warning("the last flush failed", exc_info=True)
    logging.shutdown()
    os._exit(EXIT_CODE)
