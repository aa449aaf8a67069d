"""Compiling in a forked child while the job's first hypergradients run eagerly.

``hypergradient.compile="auto"`` cannot know, before a key's first compile, whether compiling
pays; compiling in the foreground blocks the job for the cold compile (seconds), running
eagerly forgoes the speed-up. :class:`BackgroundCompile` does neither: a forked child runs
one compiled hypergradient on its copy of the job's problem, which fills the worker's disk
compile cache (Inductor's kernels, AOTAutograd's graphs), while the job goes on eagerly; once
the child exits the job's own compile finds the work on disk (Dynamo traces again, the rest
loads: well under a second).

A child process, not a thread (measured at n=600, d=65, T=100, one thread, on the 2-core VM
under load): in a thread the cold compile took 14.5 s and the eager hypergradients meanwhile
3x longer (231 ms against 79: Dynamo and Inductor are Python and hold the GIL), a loss larger
than compiling in the foreground; Dynamo also restores torch's global RNG state after every
frame it compiles, which would rewind the job thread's draws. Forked, the compile took 6.7 s,
the eager hypergradients 70 ms against 66, and the job's compile from the disk cache 0.7 s.
The child shares nothing with the job but copies of its memory: the job's results are those
of the eager path bit for bit until it switches. The job never waits for the child; a child
still compiling when the job ends is killed (:meth:`BackgroundCompile.close`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["BackgroundCompile"]

# what the child reports through its pipe, at most (a pipe holds 4 KiB without blocking)
_REPORT_BYTES = 4000


@dataclass
class BackgroundCompile:
    """A forked child running ``work`` (one compiled hypergradient), polled by the job.

    Attributes:
        pid: the child's process id.
        started: ``time.perf_counter()`` when it was forked.
        outcome: ``None`` while it runs; then ``(None, seconds)`` when ``work`` returned,
            ``(error, seconds)`` when it raised or the child died (the error named).
    """

    pid: int
    started: float
    _fd: int
    outcome: tuple[str | None, float] | None = None
    _finalizer: weakref.finalize = field(init=False, repr=False)  # type: ignore[type-arg]

    def __post_init__(self) -> None:
        # a job that never closes it (a test, `bilevel run` failing) still kills the child
        self._finalizer = weakref.finalize(self, _kill, self.pid, self._fd)

    @classmethod
    def start(cls, work: Callable[[], object]) -> BackgroundCompile:
        """Fork a child that runs ``work`` and exits; raises ``OSError`` if it cannot fork."""
        read, write = os.pipe()
        started = time.perf_counter()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child: reported through the pipe
            _child(work, read, write)
        os.close(write)
        return cls(pid, started, read)

    def poll(self) -> tuple[str | None, float] | None:
        """The child's outcome once it exited (reaped then), else ``None``: never blocks."""
        if self.outcome is None:
            try:
                done, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped by someone else: its report is still in the pipe
                done, status = self.pid, 1 << 8
            if done:
                self.outcome = self._report(status)
        return self.outcome

    def close(self) -> None:
        """Kill the child if it still runs, and release it."""
        self._finalizer()

    def _report(self, status: int) -> tuple[str | None, float]:
        report = b""
        while chunk := os.read(self._fd, _REPORT_BYTES):
            report += chunk
        self._finalizer.detach()
        os.close(self._fd)
        text = report.decode(errors="replace")
        if text.startswith("ok "):
            return None, float(text[3:])
        if not text:
            text = f"the compiling process exited with status {os.waitstatus_to_exitcode(status)}"
        return text, time.perf_counter() - self.started


def _child(work: Callable[[], object], read: int, write: int) -> None:  # pragma: no cover
    """Run ``work``, report ``ok <seconds>`` or the error, and leave without cleaning up.

    ``os._exit``: the parent's atexit handlers, buffers and connections are not the child's.
    """
    status, report = 1, "the compiling process failed"
    try:
        os.close(read)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the worker's shutdown handler is not ours
        _die_with_parent()
        import torch._inductor.config as inductor

        inductor.compile_threads = 1  # the parent's pool of compile workers is not the child's
        t0 = time.perf_counter()
        work()
        status, report = 0, f"ok {time.perf_counter() - t0:.6f}"
    except BaseException as exc:
        report = f"{type(exc).__name__}: {exc}"
    finally:
        try:
            os.write(write, report.encode()[:_REPORT_BYTES])
        finally:
            os._exit(status)


def _die_with_parent() -> None:  # pragma: no cover - the child
    """On Linux, the child dies with the job's process (the watchdog kills that one alone)."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _kill(pid: int, fd: int) -> None:
    """Kill and reap the child ``pid``; close the pipe ``fd``."""
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass
    with contextlib.suppress(OSError):
        os.close(fd)
