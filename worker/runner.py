"""Run one job: claim it, fit with ``core``, stream its trace, checkpoint, finish.

The same code runs under Celery (``worker.tasks``) and in the embedded executor
(``worker.local``). PostgreSQL (or SQLite) is the record: the claim is a conditional update,
every write after it is fenced by the attempt number, and a resumed attempt continues from
the last checkpoint exactly (``core.fit(state=...)`` is bit-identical), after deleting any
trace points written past that checkpoint so that no iteration is missing or doubled.
The trace is written by a thread of its own (``_Writer``): the training loop hands each
batch over and goes on, a checkpoint commits with or after every point up to it, a lost
lease, a cancel or a store failure stops the loop at its next iteration, and every point is
committed before the job is marked succeeded.
A job's running time is summed over its attempts (``summary.run_s``); past its limit (the
spec's ``time_limit_s``, or the worker's ``max_job_time_s``) it fails between two
hyper-iterations with ``TimeLimitExceeded``, keeping its trace up to there.
"""

from __future__ import annotations

import io
import logging
import math
import os
import signal
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from typing import Any

import torch
from sqlalchemy import select
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

import core
from jobs import repo
from jobs.models import Job, TracePoint
from jobs.spec import parse_spec
from jobs.status import JobStatus
from worker.build import build, hparams_npz, to_jsonable
from worker.settings import WorkerSettings

__all__ = [
    "LeaseLost",
    "TimeLimitExceeded",
    "request_shutdown",
    "run_job",
    "warm_up",
    "worker_name",
]

log = logging.getLogger(__name__)
# Set when the process is asked to stop (SIGTERM): the running job checkpoints and goes
# back to the queue at the next iteration instead of holding the shutdown for hours.
_shutdown = threading.Event()


def request_shutdown() -> None:
    """Preempt the running job: checkpoint it and release it to the queue."""
    _shutdown.set()


class LeaseLost(Exception):
    """The reaper gave the job to another worker: this attempt must write nothing more."""


class StoreUnavailable(Exception):
    """The store stayed unreachable past the patience: the job is left to the reaper."""


class TimeLimitExceeded(Exception):
    """The job ran past its time limit (``time_limit_s`` or the worker's ``max_job_time_s``)."""

    def __init__(self, message: str, *, iteration: int):
        super().__init__(message)
        self.iteration = iteration


def _time_limit(spec_limit: float | None, settings: WorkerSettings) -> tuple[float, str] | None:
    """The tighter of the spec's limit and the worker's ceiling, with the setting's name."""
    limits = [(spec_limit, "time_limit_s"), (settings.max_job_time_s, "max_job_time_s")]
    limits = [x for x in limits if x[0] is not None]
    return min(limits) if limits else None


def _retrying(fn: Callable[[], Any], patience_s: float) -> Any:
    """``fn()``, retried with backoff while the database connection fails.

    A restarted PostgreSQL costs one failed attempt (the pool pre-pings afterwards). Trace
    inserts ignore rows already present, so retrying a commit that did land is harmless.
    """
    delay, deadline = 0.2, time.monotonic() + patience_s
    while True:
        try:
            return fn()
        except (OperationalError, InterfaceError) as exc:
            if time.monotonic() + delay > deadline:
                raise StoreUnavailable(str(exc).splitlines()[0]) from exc
            log.warning("store unavailable (%s); retrying in %.1fs", type(exc).__name__, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def warm_up() -> None:
    """Run a two-iteration toy fit: torch's lazy initialisation costs seconds on first use."""
    problem = core.problems.PROBLEMS["toy"]()
    core.fit(
        problem,
        problem.initial_hparams(),
        core.GradientDescent(steps=3, lr=0.1),
        core.make_estimator("truncated", K=2),
        iterations=2,
        exact_every=1,
    )


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class _Heartbeat(threading.Thread):
    """Renews the lease between flushes, so that one long hyper-iteration keeps its job.

    A thread of its own, apart from the writer: while the store is down the writer sits in
    its retries' backoff, and when the store is back the lease must be renewed within a
    lease's time, before the reaper gives the job away (``worker.tasks._reaper_loop``).
    """

    def __init__(self, sessions: sessionmaker[Session], claim: repo.Claim, lease_s: float):
        super().__init__(daemon=True, name=f"heartbeat-{claim.job_id}")
        self.sessions, self.claim, self.lease_s = sessions, claim, lease_s
        self.state = "ok"
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.lease_s / 3):
            try:
                with self.sessions.begin() as s:
                    state = repo.heartbeat(s, self.claim, self.lease_s)
                if state != "ok":
                    self.state = state
            except Exception:  # a database blip: the next beat tries again
                log.warning("heartbeat failed for %s", self.claim.job_id, exc_info=True)

    def stop(self) -> None:
        self._halt.set()


class _Writer(threading.Thread):
    """Writes the trace on its own thread, so that the training loop never waits on a commit.

    The loop hands records over (``submit``, a list append under a lock) and goes on. This
    thread takes everything handed over so far (the records, the newest checkpoint and
    progress) and writes it in one fenced transaction, retried through connection failures.
    Hand-overs are written in order, and a checkpoint at iteration i goes with every record
    handed over before it, so it commits in the same transaction as, or after, every point
    <= i.

    What it learns reaches the loop at its next iteration: ``status`` (``"cancel"``), and
    ``error``, which the loop re-raises (``LeaseLost``, ``StoreUnavailable``). Before a job
    ends, the loop calls ``close``, which waits until everything handed over is written.
    The lock only guards the hand-over; the transaction runs outside it.
    """

    # Records handed over but not yet written, past which ``submit`` waits: a store that
    # is down stalls the loop (as a synchronous write did) instead of filling the memory.
    max_pending = 100_000

    def __init__(self, sessions: sessionmaker[Session], claim: repo.Claim, settings):
        super().__init__(daemon=True, name=f"trace-writer-{claim.job_id}")
        self.sessions, self.claim, self.settings = sessions, claim, settings
        self.status = "ok"
        self.error: BaseException | None = None
        self._cond = threading.Condition()
        self._records: list[dict[str, Any]] = []
        self._state: core.FitState | None = None  # the newest checkpoint handed over
        self._progress: dict[str, Any] | None = None
        self._closing = False

    def submit(self, records, state: core.FitState | None, progress: dict[str, Any]) -> None:
        """Hand over ``records`` (and a checkpoint of ``state``) to be written."""
        with self._cond:
            while len(self._records) >= self.max_pending and self.error is None:
                self._cond.wait()
            self._records += records
            self._state = state if state is not None else self._state
            self._progress = progress
            self._cond.notify_all()

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def close(self, *, check: bool = True) -> None:
        """Wait until everything handed over is written, end the thread, raise its error.

        Bounded: a write retried through an outage gives up after ``store_patience_s``.
        """
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self.join()
        if check:
            self.check()

    def run(self) -> None:
        while True:
            with self._cond:
                while self._progress is None and not self._closing:
                    self._cond.wait()
                if self._progress is None:  # closing, and everything is written
                    return
                records, state, progress = self._records, self._state, self._progress
                self._records, self._state, self._progress = [], None, None
            try:
                self._write(records, state, progress)
            except BaseException as exc:  # for the loop to raise; this thread ends
                with self._cond:
                    self.error = exc
                    self._cond.notify_all()
                return
            with self._cond:
                self._cond.notify_all()

    def _write(self, records, state: core.FitState | None, progress: dict[str, Any]) -> None:
        # serialised here, off the loop: the state is a snapshot (core.fit copies tensors)
        checkpoint = _checkpoint_bytes(state) if state is not None else None

        def write() -> str:
            with self.sessions.begin() as s:
                status = repo.heartbeat(s, self.claim, self.settings.lease_s, **progress)
                if status == "lost":
                    return status
                repo.write_trace(s, self.claim.job_id, records)
                if checkpoint is not None:
                    repo.save_artifact(
                        s, self.claim.job_id, "checkpoint", checkpoint, iteration=state.iteration
                    )
            return status

        status = _retrying(write, self.settings.store_patience_s)
        if status == "lost":
            raise LeaseLost
        if status == "cancel":
            self.status = "cancel"


def _checkpoint_bytes(state: core.FitState) -> bytes:
    # The history lives in trace_points; the checkpoint keeps its keys only, so that its
    # size does not grow with the iteration count.
    d = state.state_dict()
    d["history"] = {k: [] for k in state.history}
    buf = io.BytesIO()
    torch.save(d, buf)
    return buf.getvalue()


def _load_checkpoint(data: bytes, device: torch.device) -> core.FitState:
    # onto the job's device: resuming a CUDA job must not continue on the CPU
    d = torch.load(io.BytesIO(data), weights_only=True, map_location=device)
    return core.FitState.from_state_dict(d)


def run_job(
    sessions: sessionmaker[Session],
    job_id: uuid.UUID | str,
    settings: WorkerSettings,
    *,
    worker: str | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> str:
    """Claim and run a job to its end.

    Returns:
        ``"skipped"`` when the job was not queued (a duplicate delivery, or cancelled),
        ``"deferred"`` when its team already runs ``settings.max_running_jobs`` jobs (it stays
        queued, to be sent again when one of them stops), ``"lost"`` when the lease was taken
        away meanwhile, ``"released"`` when the process is shutting down and the job went back
        to the queue, else the final status.
    """
    job_id = uuid.UUID(str(job_id))
    worker = worker or worker_name()

    def claim_it():
        with sessions.begin() as s:
            if repo.at_running_limit(s, job_id, settings.max_running_jobs):
                return "deferred"
            return repo.claim_job(s, job_id, worker, settings.lease_s)

    claim = _retrying(claim_it, settings.store_patience_s)
    if claim == "deferred":
        log.info("job %s: its team runs max_running_jobs=%d jobs; left queued",
                 job_id, settings.max_running_jobs)  # fmt: skip
        return "deferred"
    if claim is None:
        return "skipped"
    log.info("job %s: attempt %d on %s", job_id, claim.attempt, worker)
    beat = _Heartbeat(sessions, claim, settings.lease_s)
    beat.start()
    writer = _Writer(sessions, claim, settings)
    writer.start()
    try:
        return _run_claimed(sessions, claim, settings, beat, writer, on_record)
    except LeaseLost:
        log.warning("job %s: lease lost, attempt %d stops", job_id, claim.attempt)
        return "lost"
    except StoreUnavailable as exc:
        # the lease runs out and the reaper requeues the job, to resume from its checkpoint
        log.error("job %s: store unavailable, attempt %d stops: %s", job_id, claim.attempt, exc)
        return "store-unavailable"
    finally:
        # closed already on every normal path; else (an unexpected error) what was handed
        # over is still written, fenced by the attempt, with its checkpoint
        writer.close(check=False)
        beat.stop()


def _run_claimed(sessions, claim, settings, beat, writer, on_record) -> str:
    with sessions() as s:
        job = s.get(Job, claim.job_id)
        spec_data = job.spec
        # running time of the earlier attempts, as their last flush recorded it
        ran_s = float((job.summary or {}).get("run_s") or 0.0)
        checkpoint = repo.load_artifact(s, claim.job_id, "checkpoint")
        checkpoint = (checkpoint.iteration, checkpoint.data) if checkpoint else None
    try:
        spec = parse_spec(spec_data)
        built = build(spec, settings.data_dir)
        state = _load_checkpoint(checkpoint[1], built.device) if checkpoint else None
    except Exception as exc:  # a spec the library rejects fails at once, no retry
        writer.close()
        return _fail(sessions, claim, exc, settings)

    start = state.iteration if state else 0
    with sessions.begin() as s:
        repo.truncate_trace(s, claim.job_id, start)
        best = _best(s, claim.job_id)
        last = s.scalar(
            select(TracePoint.outer_loss)
            .where(TracePoint.job_id == claim.job_id)
            .order_by(TracePoint.iteration.desc())
            .limit(1)
        )
    run = _Stream(settings, beat, writer, start, spec.outer.iterations, best, on_record)
    run.last_loss = last
    run.ran_before_s = ran_s
    run.time_limit = _time_limit(spec.time_limit_s, settings)
    run.crash = settings.fault_crash_job is not None and spec.name == settings.fault_crash_job
    try:
        out = core.fit(
            built.problem,
            built.hparams,
            built.dynamics,
            built.estimator,
            callback=run,
            state=state,
            keep_history=False,  # the records go to trace_points; states stay small
            **built.fit_kwargs,
        )
    except (LeaseLost, StoreUnavailable):
        raise
    except Exception as exc:
        run.close()  # the points up to the failure are kept
        return _fail(sessions, claim, exc, settings)
    if out.stopped and run.preempted and not run.cancelled:
        run.close()  # the checkpoint at this iteration is written before the release

        def release():
            with sessions.begin() as s:
                return repo.release_job(s, claim)

        return "released" if _retrying(release, settings.store_patience_s) else "lost"
    if out.stopped:
        run.close()  # cancelled: keep what was computed

        def cancel():
            with sessions.begin() as s:
                return repo.finish_job(
                    s,
                    claim,
                    JobStatus.CANCELLED,
                    summary=run.summary(),
                    iteration=out.state.iteration,
                )

        return JobStatus.CANCELLED if _retrying(cancel, settings.store_patience_s) else "lost"
    return _succeed(sessions, claim, built, out, run)


def _best(s: Session, job_id: uuid.UUID) -> tuple[float, int] | None:
    row = s.execute(
        select(TracePoint.outer_loss, TracePoint.iteration)
        .where(TracePoint.job_id == job_id, TracePoint.outer_loss.is_not(None))
        .order_by(TracePoint.outer_loss, TracePoint.iteration)
        .limit(1)
    ).first()
    return (row[0], row[1]) if row else None


class _Stream:
    """``core.fit``'s callback: buffers records and hands them to the writer in batches.

    It runs once per hyper-iteration on the training loop's thread, so it does as little as
    it can: keep the record, track the best loss, and every ``flush_every_s`` (or
    ``flush_every_n`` records) hand the batch over, with a checkpoint when one is due.
    """

    def __init__(self, settings, beat, writer: _Writer, start, iterations, best, on_record):
        self.settings, self.beat, self.writer = settings, beat, writer
        self.iterations = iterations
        self.buffer: list[dict[str, Any]] = []
        self.start_iteration = self.iteration = start
        self.t0 = self.last_flush = self.last_ckpt = time.monotonic()
        self.ckpt_iteration = start
        self.best = best
        self.last_loss: float | None = None
        self.on_record = on_record
        self.preempted = False
        self.ran_before_s = 0.0
        self.time_limit: tuple[float, str] | None = None  # (seconds, the setting's name)
        self.crash = False  # the fault suite's injected crash (WorkerSettings.fault_crash_job)

    @property
    def cancelled(self) -> bool:
        return self.writer.status == "cancel" or self.beat.state == "cancel"

    def __call__(self, record: dict[str, Any], state: core.FitState) -> bool:
        if self.beat.state == "lost":
            raise LeaseLost
        self.writer.check()  # a lost lease or a store given up on stops the loop here
        self.buffer.append(dict(record))  # on_record (user code) must not change it
        self.iteration = int(record["iteration"])
        loss = float(record["outer_loss"])
        self.last_loss = loss
        if math.isfinite(loss) and (self.best is None or loss < self.best[0]):
            self.best = (loss, self.iteration)
        if self.on_record is not None:
            self.on_record(record)
        if self.crash and self.iteration >= 2:
            os.kill(os.getpid(), signal.SIGKILL)
        now = time.monotonic()
        if self.time_limit is not None and self.run_s(now) > self.time_limit[0]:
            # raised with this iteration buffered: the failure path writes it
            limit, name = self.time_limit
            raise TimeLimitExceeded(
                f"time limit exceeded: ran {self.run_s(now):.2f} s over its attempts, past "
                f"{name}={limit:g}; stopped after iteration {self.iteration}",
                iteration=self.iteration,
            )
        if _shutdown.is_set():
            self.flush(state)  # with a checkpoint at this very iteration
            self.preempted = True
            return True
        s = self.settings
        due_ckpt = (
            now - self.last_ckpt >= s.checkpoint_every_s
            or self.iteration - self.ckpt_iteration >= s.checkpoint_every_n
        )
        if (
            due_ckpt
            or now - self.last_flush >= s.flush_every_s
            or len(self.buffer) >= s.flush_every_n
        ):
            self.flush(state if due_ckpt else None)
        return self.cancelled

    def eta(self) -> float | None:
        done = self.iteration - self.start_iteration
        if done <= 0:
            return None
        rate = (time.monotonic() - self.t0) / done
        return rate * (self.iterations - self.iteration)

    def run_s(self, now: float | None = None) -> float:
        """Running time of this job over all its attempts so far."""
        return self.ran_before_s + (now or time.monotonic()) - self.t0

    def summary(self) -> dict[str, Any]:
        return {
            "run_s": round(self.run_s(), 3),
            "last_outer_loss": self.last_loss,
            "best_outer_loss": self.best[0] if self.best else None,
            "best_iteration": self.best[1] if self.best else None,
        }

    def flush(self, state: core.FitState | None) -> None:
        """Hand the buffered records (and a checkpoint of ``state``) to the writer."""
        progress = {"iteration": self.iteration, "eta_s": self.eta(), "summary": self.summary()}
        self.writer.submit(self.buffer, state, progress)
        self.buffer = []
        self.last_flush = time.monotonic()
        if state is not None:
            self.last_ckpt, self.ckpt_iteration = self.last_flush, state.iteration

    def close(self) -> None:
        """Write every record so far, wait for it, and end the writer (raising its error)."""
        self.flush(None)
        self.writer.close()


def _succeed(sessions, claim, built, out, run) -> str:
    res = core.hypergradient(built.problem, out.hparams, built.dynamics, built.estimator)
    metrics = {k: float(v) for k, v in built.problem.metrics(res.params, out.hparams).items()}
    # every batch handed over is committed now; the last one commits with the success below
    run.writer.close()
    summary = {
        **run.summary(),
        "final_outer_loss": float(res.outer_loss),
        "metrics": metrics,
        "hparams": to_jsonable(out.hparams),
    }
    hparams = hparams_npz(out.hparams)

    def finish() -> None:
        with sessions.begin() as s:
            _finish_success(s, claim, run, out, hparams, summary)

    _retrying(finish, run.settings.store_patience_s)
    run.buffer = []
    return JobStatus.SUCCEEDED


def _finish_success(s: Session, claim, run, out, hparams: bytes, summary) -> None:
    if repo.heartbeat(s, claim, run.settings.lease_s) == "lost":
        raise LeaseLost
    repo.write_trace(s, claim.job_id, run.buffer)
    repo.save_artifact(
        s,
        claim.job_id,
        "hparams",
        hparams,
        iteration=out.state.iteration,
        media_type="application/x-npz",
    )
    ok = repo.finish_job(
        s, claim, JobStatus.SUCCEEDED, summary=summary, iteration=out.state.iteration
    )
    if not ok:
        raise LeaseLost


def _fail(sessions, claim, exc: BaseException, settings: WorkerSettings) -> str:
    error: dict[str, Any] = {"type": type(exc).__name__, "detail": str(exc)}
    if isinstance(exc, (core.DivergenceError, TimeLimitExceeded)) and exc.iteration is not None:
        error["iteration"] = exc.iteration
    if not isinstance(exc, (core.BilevelError, TimeLimitExceeded)):
        error["traceback"] = "".join(traceback.format_exception(exc))[-4000:]
    log.warning("job %s failed: %s", claim.job_id, error["detail"])

    def fail() -> bool:
        with sessions.begin() as s:
            return repo.finish_job(s, claim, JobStatus.FAILED, error=error)

    return JobStatus.FAILED if _retrying(fail, settings.store_patience_s) else "lost"
