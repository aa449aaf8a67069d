"""The job process's side of the watchdog: a spawned child that runs the claims it is sent.

:class:`JobProcess` is the supervisor's handle on it (:mod:`worker.watchdog`); the rest of
this module runs in the child. Over one pipe the child says ``("ready", pid)`` once torch is
warm, ``("tick", iteration)`` at every completed hyper-iteration and ``("done", outcome)`` at
the end of each claim, which it runs as every worker does (:func:`worker.runner.run_claim`).

``spawn``, never ``fork``: the child is a fresh interpreter, so CUDA is never initialised in
a process that forks, and torch is imported here only, never by the Celery process. The
child exits as soon as its parent is gone (a SIGKILLed worker takes its job with it, and the
lease expires); SIGTERM asks the running job to checkpoint and be released; SIGINT (Ctrl-C,
sent to the whole process group) is the parent's to act on, so the child ignores it; SIGUSR1
writes every thread's stack to the log before the supervisor kills a hung job, and SIGUSR2
then has it write its buffered trace and exit (``worker.last_flush``).
"""

from __future__ import annotations

import atexit
import faulthandler
import logging
import multiprocessing
import os
import signal
import threading
import time
import weakref
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from jobs.store import repo
from worker import last_flush
from worker.settings import WorkerSettings
from worker.shutdown import request_shutdown

__all__ = ["STARTUP_S", "JobProcess", "OnRecord"]

log = logging.getLogger(__name__)

#: how long a fresh job process may take to be ready (imports torch, warms it up)
STARTUP_S = 300.0

#: called in the job process with every trace record (tests inject faults with it)
OnRecord = Callable[[dict[str, Any]], None]


class JobProcess:
    """A spawned process that runs the claims it is sent, one at a time.

    It says ``("ready", pid)`` once torch is warm, then ``("tick", iteration)`` at every
    completed hyper-iteration and ``("done", outcome)`` at the end of each claim.

    Args:
        store_url: the store to connect to (the supervisor's own).
        settings: the worker's settings.
    """

    def __init__(self, store_url: str, settings: WorkerSettings):
        ctx = multiprocessing.get_context("spawn")
        self._conn, theirs = ctx.Pipe()
        level = logging.getLogger().getEffectiveLevel()
        # not a daemon: a job may start processes of its own (data loaders)
        self._proc = ctx.Process(
            target=_serve, args=(theirs, store_url, settings, level), name="bilevel-job"
        )
        self._proc.start()
        theirs.close()
        self.pid: int = self._proc.pid or 0
        self.ready = False
        _live.add(self)

    def wait_ready(self, timeout: float) -> None:
        """Wait for the ``ready`` message; ``RuntimeError`` if the process dies or is late."""
        if self.ready:
            return
        msg = self.receive(timeout)
        if msg is None or msg[0] != "ready":
            self.kill()
            raise RuntimeError(f"job process {self.pid} not ready within {timeout:g} s: {msg}")
        self.ready = True

    def run(self, claim: repo.Claim, on_record: OnRecord | None) -> None:
        """Start running ``claim`` (``on_record`` is called there, so it must pickle)."""
        self._conn.send((claim, on_record))

    def receive(self, timeout: float) -> tuple[str, Any] | None:
        """The next message, or ``None`` after ``timeout``.

        Raises:
            EOFError: the process is gone.
        """
        if not self._conn.poll(timeout):
            if not self._proc.is_alive():  # its pipe may outlive it in a child of its own
                raise EOFError
            return None
        msg: tuple[str, Any] = self._conn.recv()
        return msg

    def terminate(self) -> None:
        """SIGTERM: the running job checkpoints and is released (``worker.shutdown``)."""
        if self._proc.is_alive():
            os.kill(self.pid, signal.SIGTERM)

    def flush_and_exit(self, grace_s: float) -> bool:
        """Ask the job to write its buffered trace and exit (``worker.last_flush``).

        Returns:
            Whether it exited within ``grace_s`` (else the caller kills it).
        """
        if grace_s <= 0 or not self._proc.is_alive():
            return not self._proc.is_alive()
        os.kill(self.pid, last_flush.SIGNAL)
        self._proc.join(grace_s)
        return not self._proc.is_alive()

    def dump_stacks(self) -> None:
        """SIGUSR1: the process writes every thread's stack to its stderr (the log)."""
        if self._proc.is_alive():
            os.kill(self.pid, signal.SIGUSR1)
            time.sleep(0.2)  # the dump is written by a C handler, at once; give it the time

    def kill(self) -> None:
        """SIGKILL, and wait for it: nothing of the job runs on afterwards."""
        if self._proc.is_alive():
            self._proc.kill()
        self._proc.join(30)
        self._conn.close()
        _live.discard(self)

    @property
    def exitcode(self) -> int | None:
        return self._proc.exitcode

    def close(self, timeout: float = 10.0) -> None:
        """Let an idle process exit (it ends when its pipe closes), else kill it."""
        self._conn.close()
        self._proc.join(timeout)
        self.kill()


# every live job process, closed at exit: a non-daemonic child would block the parent's exit
_live: weakref.WeakSet[JobProcess] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for proc in list(_live):
        proc.close(timeout=2.0)


# -- in the job process ----------------------------------------------------------------------


def _follow_parent() -> None:
    """Exit as soon as the parent is gone: a SIGKILLed worker takes its job with it."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(70)  # nothing to clean up: the lease expires and the job resumes elsewhere

    threading.Thread(target=watch, daemon=True, name="follow-parent").start()


def _tell(conn: Connection, msg: tuple[str, Any]) -> None:
    try:
        conn.send(msg)
    except OSError:
        # the supervisor is gone (a SIGKILLed worker), and this attempt with it: exit before
        # the runner takes the broken pipe for the job's own error and fails the job
        os._exit(70)


def _schedule(policy: str) -> None:
    """Puts the calling thread (and the threads it starts) in CPU class ``policy``."""
    if policy == "normal":
        return
    chosen = os.SCHED_IDLE if policy == "idle" else os.SCHED_BATCH
    try:
        os.sched_setscheduler(0, chosen, os.sched_param(0))
    except (AttributeError, OSError) as exc:  # not Linux, or refused: run at the normal class
        log.warning("BILEVEL_JOB_SCHED=%s not applied: %s", policy, exc)


def _serve(conn: Connection, store_url: str, settings: WorkerSettings, level: int) -> None:
    # before any thread starts, so that every one inherits the mask (worker.last_flush)
    last_flush.block()
    last_flush.listen()
    _follow_parent()
    # SIGUSR1 writes every thread's stack to stderr, even with the main thread stuck in C:
    # the supervisor sends it before the kill, so the log shows where the job hung
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: request_shutdown())
    logging.basicConfig(
        level=level, format="[%(asctime)s: %(levelname)s/job-process %(process)d] %(message)s"
    )
    # after the signal threads (they stay responsive), before torch loads: its import (a
    # second or two of CPU, at a worker's start, while the API may be serving) and its
    # threads get the class too
    _schedule(settings.job_sched)
    from jobs.store.db import make_engine, make_session_factory
    from worker import runner  # torch loads here, in the job process only

    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)
    try:
        runner.warm_up(settings.resolved_compile_cache_dir if settings.compile_warm_up else None)
    except Exception:
        log.warning("warm-up failed", exc_info=True)
    engine = make_engine(store_url, pool_size=settings.worker_db_pool_size,
                         max_overflow=settings.worker_db_max_overflow,
                         prepared=settings.db_prepared_statements)  # fmt: skip
    sessions = make_session_factory(engine)
    _tell(conn, ("ready", os.getpid()))
    while True:
        try:
            claim, on_record = conn.recv()
        except EOFError:  # the supervisor closed it: no more jobs
            break

        def tick(record: dict[str, Any], on_record: OnRecord | None = on_record) -> None:
            _tell(conn, ("tick", int(record["iteration"])))
            if on_record is not None:
                on_record(record)

        outcome = runner.run_claim(sessions, claim, settings, on_record=tick)
        _tell(conn, ("done", outcome.value))
    engine.dispose()
