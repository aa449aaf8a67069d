"""The watchdog: a job runs in a process of its own, killed when it stops making progress.

Time limits are checked between hyper-iterations, and Celery's hard time limits do not work
with the solo pool, so one hyper-iteration that never ends (a deadlocked data loader, a
stuck CUDA kernel, a plugin's infinite loop) would hold its worker and renew its lease
forever. So the process that takes a job (the Celery task's, or the embedded executor's
thread) only claims it: a :class:`Supervisor` (this module) hands the claim to a
:class:`~worker.job_process.JobProcess` (the job process's side, :mod:`worker.job_process`),
a child started with ``spawn`` that runs it exactly as before (:func:`worker.runner.run_claim`:
heartbeat, trace writer, checkpoints and exact resume, cancel, preemption, the release on
shutdown) and reports every completed hyper-iteration over a pipe. When none completed for
``stall_s`` (the spec's, else the worker's), or the job runs past its time limit by more
than :data:`GRACE_S` inside one iteration, the supervisor asks the job process to write the
trace points it holds and exit (``worker.last_flush``, within ``flush_grace_s``), SIGKILLs it
if it did not, ends the attempt ``failed`` (``IterationStalled`` or ``TimeLimitExceeded``,
fenced by the attempt like every write, so the lease is given up at once rather than left to
expire; ``error.iteration`` and ``jobs.iteration`` are the stored trace's last) and starts a
fresh job process for the next job. The job process is kept from job to job otherwise: torch's
import and warm-up cost seconds, which a grid of small jobs should not pay each time.

Why a child of the worker rather than a supervisor around the whole Celery worker: the
parent holds the claim, so it ends the job itself and at once, without learning it back from
the store; the embedded mode, which has no Celery process to wrap, uses the same class; and
the Celery side (messages, the reaper, the notifier, the pool's heartbeat) stays as it was in
a parent that never imports torch. ``spawn``, never ``fork``: the child is a fresh
interpreter, so CUDA is never initialised in a process that forks.

A SIGKILLed worker takes its job process with it (the child exits as soon as it is
orphaned), so its lease expires and the reaper resumes the job elsewhere from its
checkpoint. A job process that dies on its own (an OOM kill, a segfault) loses its attempt
too (``Outcome.CRASHED``), but its supervisor is alive to give the lease up at once (fenced
by the attempt): the job goes back to the queue and is sent again, or fails when that was
its last attempt, as the reaper would have done a lease later; the worker goes on with a
fresh job process. A shutdown request (SIGTERM) in the parent is passed on as SIGTERM, so the
running job checkpoints and is released as before; Ctrl-C reaches the whole process group,
and SIGINT is the parent's to act on, so the child ignores it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from jobs.store import repo
from worker import attempt
from worker.errors import IterationStalled, TimeLimitExceeded
from worker.job_process import STARTUP_S, JobProcess, OnRecord
from worker.outcome import Outcome
from worker.settings import WorkerSettings
from worker.shutdown import shutdown_requested

__all__ = ["CANCEL_GRACE_S", "GRACE_S", "Requeue", "Supervisor"]

log = logging.getLogger(__name__)

#: how long past its time limit a job may run before the watchdog kills it: the job's own
#: check between iterations ends it first, keeping its trace up to there, unless one
#: iteration overruns (the supervisor's clock also starts before the job's setup)
GRACE_S = 5.0
#: how long a job asked to stop may take to end itself (at its next hyper-iteration, keeping
#: its summary) before the watchdog kills its process and ends it ``cancelled``: a hung job
#: would otherwise hold its cancel until ``stall_s``
CANCEL_GRACE_S = 10.0
# how often the supervisor wakes without news: the resolution of the bounds above
_POLL_S = 0.25
# how often it reads the job's cancel request from the store
_CANCEL_POLL_S = 1.0

#: sends a job (its id, its queue kind) to whatever runs jobs: a Celery message, a local queue
Requeue = Callable[[uuid.UUID, str], None]


@dataclass(frozen=True)
class _Bounds:
    stall_s: float
    stall_name: str
    # (seconds left, the whole limit, its setting's name, seconds run before), or None
    time_limit: tuple[float, float, str, float] | None
    iteration: int


class Supervisor:
    """Runs jobs in a :class:`JobProcess`, killing it when a job stalls or overruns.

    Args:
        sessions: the store's session factory (the job process connects to the same store).
        settings: the worker's settings (``stall_s`` among them).
        worker: the name to claim under (default ``host:pid`` of this process).
        requeue: sends a job again, ``(job id, queue kind)``, as the reaper's caller does
            with what it requeued: a job whose process died goes back to the queue at once.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: WorkerSettings,
        *,
        worker: str | None = None,
        requeue: Requeue | None = None,
    ):
        self.sessions, self.settings = sessions, settings
        self.requeue = requeue
        self.worker = worker or attempt.worker_name()
        bind = sessions.kw["bind"]
        self._store_url: str = bind.url.render_as_string(hide_password=False)
        self._proc: JobProcess | None = None

    @property
    def pid(self) -> int | None:
        """The job process's pid, when there is one."""
        return self._proc.pid if self._proc is not None else None

    def start(self, *, wait: bool = False) -> Supervisor:
        """Start the job process now, so that the first job does not wait for torch.

        Args:
            wait: also wait until it is ready (``RuntimeError`` if it does not start).
        """
        if self._proc is None:
            self._proc = JobProcess(self._store_url, self.settings)
        if wait:
            self._ready(self._proc)
        return self

    def _ready(self, proc: JobProcess) -> None:
        try:
            proc.wait_ready(STARTUP_S)
        except (RuntimeError, EOFError) as exc:
            self._proc = None
            raise RuntimeError(f"job process {proc.pid} did not start: {exc}") from exc

    def close(self) -> None:
        """End the job process (between jobs)."""
        if self._proc is not None:
            self._proc.close()
            self._proc = None

    def execute(self, job_id: uuid.UUID | str, *, on_record: OnRecord | None = None) -> Outcome:
        """Claim a job as :func:`worker.runner.execute_job` does and run it under watch.

        Args:
            job_id: the job the message named (its queue kind is the one served).
            on_record: called in the job process with every trace record (tests inject
                faults with it); it must pickle, i.e. be a module-level function.

        Returns:
            What :func:`worker.runner.execute_job` returns, or ``FAILED`` when the watchdog
            ended the job, or ``CRASHED`` when the job process died under it and the job went
            back to the queue (``FAILED`` when that was its last attempt).

        Raises:
            RuntimeError: a fresh job process did not start (nothing was claimed).
        """
        proc = self.start()._proc
        assert proc is not None
        self._ready(proc)
        claim = attempt.claim(self.sessions, job_id, self.settings, self.worker)
        if not isinstance(claim, repo.Claim):
            return claim
        bounds = self._bounds(claim)
        proc.run(claim, on_record)
        return self._watch(proc, claim, bounds)

    def _bounds(self, claim: repo.Claim) -> _Bounds:
        with self.sessions() as s:
            job = repo.get_job(s, None, claim.job_id)
            spec = dict(job.spec) if job is not None else {}
            ran_s = float(((job.summary if job else None) or {}).get("run_s") or 0.0)
            iteration = int((job.iteration if job else 0) or 0)
        # read, not parsed: the spec was validated at submission, and a spec the library
        # rejects is the job process's to fail
        stall = spec.get("stall_s")
        stall_s, stall_name = (
            (float(stall), "stall_s (the spec's)")
            if isinstance(stall, (int, float))
            else (self.settings.stall_s, "stall_s (the worker's)")
        )
        spec_limit = spec.get("time_limit_s")
        limit = attempt.time_limit(
            float(spec_limit) if isinstance(spec_limit, (int, float)) else None, self.settings
        )
        time_limit = (limit[0] - ran_s, limit[0], limit[1], ran_s) if limit else None
        return _Bounds(stall_s, stall_name, time_limit, iteration)

    def _watch(self, proc: JobProcess, claim: repo.Claim, bounds: _Bounds) -> Outcome:
        started = last = checked = time.monotonic()
        iteration = bounds.iteration
        passed_on = False  # the shutdown request, to the job process
        cancel_seen: float | None = None  # when the supervisor first read a cancel request
        while True:
            try:
                msg = proc.receive(_POLL_S)
            except EOFError:
                return self._crashed(proc, claim)
            now = time.monotonic()
            if msg is not None and msg[0] == "tick":
                last, iteration = now, int(msg[1])
            elif msg is not None and msg[0] == "done":
                if passed_on:  # its shutdown flag stays set: the next job gets a fresh one
                    self.close()
                return Outcome(msg[1])
            if shutdown_requested() and not passed_on:
                proc.terminate()
                passed_on = True
            if cancel_seen is None and now - checked >= _CANCEL_POLL_S:
                checked = now
                if self._cancel_requested(claim):
                    cancel_seen = now
            if cancel_seen is not None and now - cancel_seen > CANCEL_GRACE_S:
                return self._cancel(proc, claim, iteration, now - cancel_seen)
            if now - last > bounds.stall_s:
                return self._end(proc, claim, IterationStalled(
                    f"no hyper-iteration completed for {now - last:.1f} s, past "
                    f"{bounds.stall_name}={bounds.stall_s:g}, after iteration {iteration}; "
                    f"the watchdog killed the job's process {proc.pid}",
                    iteration=iteration,
                ))  # fmt: skip
            if bounds.time_limit is not None:
                left, limit, name, ran_s = bounds.time_limit
                if now - started > left + GRACE_S:
                    return self._end(proc, claim, TimeLimitExceeded(
                        f"time limit exceeded: ran {ran_s + now - started:.2f} s over its "
                        f"attempts, past {name}={limit:g}, inside iteration {iteration + 1}; "
                        f"the watchdog killed the job's process {proc.pid}",
                        iteration=iteration,
                    ))  # fmt: skip

    def _replace(self, proc: JobProcess, *, dump: bool) -> None:
        """Kill ``proc`` and start the next job's process, which warms up while the caller
        writes the attempt's end.

        With ``dump``, ``proc`` is alive: its threads' stacks go to the log first, then it is
        asked to write the trace points it holds and exit, within ``flush_grace_s``
        (``worker.last_flush``); SIGKILL follows if it did not.
        """
        if dump:
            proc.dump_stacks()
            if not proc.flush_and_exit(self.settings.flush_grace_s):
                log.warning("job process %d did not write its trace within flush_grace_s=%g; "
                            "killed", proc.pid, self.settings.flush_grace_s)  # fmt: skip
        proc.kill()
        self._proc = None
        self.start()

    def _cancel_requested(self, claim: repo.Claim) -> bool:
        try:
            with self.sessions() as s:
                return repo.cancel_is_requested(s, claim.job_id)
        except Exception:  # the store is away: the job process has its own patience for it
            log.debug("could not read job %s's cancel request", claim.job_id, exc_info=True)
            return False

    def _cancel(
        self, proc: JobProcess, claim: repo.Claim, iteration: int, waited: float
    ) -> Outcome:
        """Kill a job process that did not stop when asked, and end the job ``cancelled``."""
        self._replace(proc, dump=True)  # the next job's process warms while the store is written
        detail = {
            "cancelled_by": "watchdog",
            "detail": f"cancel requested; the job did not stop within {waited:.1f} s "
            f"(after iteration {iteration}), so the watchdog killed its process {proc.pid}",
            "iteration": iteration,
            "pid": proc.pid,
        }
        log.warning("job %s: %s", claim.job_id, detail["detail"])
        return attempt.cancel(self.sessions, claim, detail, self.settings, at_stored_trace=True)

    def _crashed(self, proc: JobProcess, claim: repo.Claim) -> Outcome:
        """Give the dead job process's attempt up at once, not when its lease expires."""
        self._replace(proc, dump=False)  # nothing to dump: it is dead
        outcome, queue = attempt.crashed(self.sessions, claim, proc.exitcode, self.settings)
        now = {Outcome.CRASHED: "requeued", Outcome.FAILED: "failed (its last attempt)"}
        log.error("job %s: its process %d died (exit code %s); %s", claim.job_id, proc.pid,
                  proc.exitcode, now.get(outcome, "the lease had moved on"))  # fmt: skip
        if queue is not None and self.requeue is not None:
            try:  # after the commit, as the reaper sends what it requeued
                self.requeue(claim.job_id, queue)
            except Exception:  # the reaper resends jobs queued for too long anyway
                log.warning("could not send job %s again", claim.job_id, exc_info=True)
        return outcome

    def _end(
        self, proc: JobProcess, claim: repo.Claim, exc: IterationStalled | TimeLimitExceeded
    ) -> Outcome:
        """Kill the job process, fail the attempt, and start the next job's process."""
        self._replace(proc, dump=True)
        # error.iteration is the stored trace's last (attempt.fail), which the last flush
        # brought up to the last completed iteration, unless the job did not flush in time
        error = {"type": type(exc).__name__, "detail": str(exc), "iteration": exc.iteration,
                 "pid": proc.pid}  # fmt: skip
        return attempt.fail(self.sessions, claim, error, self.settings, at_stored_trace=True)
