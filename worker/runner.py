"""Run one job: claim it, fit with ``core``, stream its trace, checkpoint, finish.

The same code runs under Celery (``worker.tasks``) and in the embedded executor
(``worker.local``). PostgreSQL (or SQLite) is the record: the claim is a conditional update,
every write after it is fenced by the attempt number, and a resumed attempt continues from
the last checkpoint exactly (``core.fit(state=...)`` is bit-identical), after deleting any
trace points written past that checkpoint so that no iteration is missing or doubled.
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
    """Renews the lease between flushes, so that one long hyper-iteration keeps its job."""

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
        ``"lost"`` when the lease was taken away meanwhile, ``"released"`` when the process
        is shutting down and the job went back to the queue, else the final status.
    """
    job_id = uuid.UUID(str(job_id))
    worker = worker or worker_name()

    def claim_it():
        with sessions.begin() as s:
            return repo.claim_job(s, job_id, worker, settings.lease_s)

    claim = _retrying(claim_it, settings.store_patience_s)
    if claim is None:
        return "skipped"
    log.info("job %s: attempt %d on %s", job_id, claim.attempt, worker)
    beat = _Heartbeat(sessions, claim, settings.lease_s)
    beat.start()
    try:
        return _run_claimed(sessions, claim, settings, beat, on_record)
    except LeaseLost:
        log.warning("job %s: lease lost, attempt %d stops", job_id, claim.attempt)
        return "lost"
    except StoreUnavailable as exc:
        # the lease runs out and the reaper requeues the job, to resume from its checkpoint
        log.error("job %s: store unavailable, attempt %d stops: %s", job_id, claim.attempt, exc)
        return "store-unavailable"
    finally:
        beat.stop()


def _run_claimed(sessions, claim, settings, beat, on_record) -> str:
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
    run = _Stream(sessions, claim, settings, beat, start, spec.outer.iterations, best, on_record)
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
        run.flush(None, final=True)
        return _fail(sessions, claim, exc, settings)
    if out.stopped and run.preempted and not run.cancelled:

        def release():
            with sessions.begin() as s:
                return repo.release_job(s, claim)

        return "released" if _retrying(release, settings.store_patience_s) else "lost"
    if out.stopped:
        # cancelled: keep what was computed
        run.flush(out.state, final=True)

        def cancel():
            with sessions.begin() as s:
                return repo.finish_job(
                    s, claim, "cancelled", summary=run.summary(), iteration=out.state.iteration
                )

        return "cancelled" if _retrying(cancel, settings.store_patience_s) else "lost"
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
    """``core.fit``'s callback: buffers records, flushes them in batches, checkpoints."""

    def __init__(self, sessions, claim, settings, beat, start, iterations, best, on_record):
        self.sessions, self.claim, self.settings, self.beat = sessions, claim, settings, beat
        self.iterations = iterations
        self.buffer: list[dict[str, Any]] = []
        self.start_iteration = self.iteration = start
        self.t0 = self.last_flush = self.last_ckpt = time.monotonic()
        self.ckpt_iteration = start
        self.best = best
        self.last_loss: float | None = None
        self.on_record = on_record
        self.cancel = False
        self.preempted = False
        self.ran_before_s = 0.0
        self.time_limit: tuple[float, str] | None = None  # (seconds, the setting's name)
        self.crash = False  # the fault suite's injected crash (WorkerSettings.fault_crash_job)

    @property
    def cancelled(self) -> bool:
        return self.cancel or self.beat.state == "cancel"

    def __call__(self, record: dict[str, Any], state: core.FitState) -> bool:
        if self.beat.state == "lost":
            raise LeaseLost
        self.buffer.append(dict(record))
        self.iteration = int(record["iteration"])
        loss = float(record["outer_loss"])
        self.last_loss = loss
        if math.isfinite(loss) and (self.best is None or loss < self.best[0]):
            self.best = (loss, self.iteration)
        if self.on_record is not None:
            self.on_record(record)
        if self.crash and self.iteration >= 2:
            os.kill(os.getpid(), signal.SIGKILL)
        if self.time_limit is not None and self.run_s() > self.time_limit[0]:
            # raised with this iteration buffered: the failure path flushes it
            limit, name = self.time_limit
            raise TimeLimitExceeded(
                f"time limit exceeded: ran {self.run_s():.2f} s over its attempts, past "
                f"{name}={limit:g}; stopped after iteration {self.iteration}",
                iteration=self.iteration,
            )
        if _shutdown.is_set():
            self.flush(state)  # with a checkpoint at this very iteration
            self.preempted = True
            return True
        now = time.monotonic()
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

    def run_s(self) -> float:
        """Running time of this job over all its attempts so far."""
        return self.ran_before_s + time.monotonic() - self.t0

    def summary(self) -> dict[str, Any]:
        return {
            "run_s": round(self.run_s(), 3),
            "last_outer_loss": self.last_loss,
            "best_outer_loss": self.best[0] if self.best else None,
            "best_iteration": self.best[1] if self.best else None,
        }

    def flush(self, state: core.FitState | None, *, final: bool = False) -> None:
        """Write the buffered points (and a checkpoint) in one fenced transaction."""
        status = _retrying(lambda: self._write(state, final), self.settings.store_patience_s)
        self.buffer = []
        self.last_flush = time.monotonic()
        if state is not None:
            self.last_ckpt, self.ckpt_iteration = self.last_flush, state.iteration
        self.cancel = self.cancel or status == "cancel"

    def _write(self, state: core.FitState | None, final: bool) -> str:
        with self.sessions.begin() as s:
            status = repo.heartbeat(
                s,
                self.claim,
                self.settings.lease_s,
                iteration=self.iteration,
                eta_s=self.eta(),
                summary=self.summary(),
            )
            if status == "lost":
                raise LeaseLost
            repo.write_trace(s, self.claim.job_id, self.buffer)
            if state is not None and not final:
                repo.save_artifact(
                    s,
                    self.claim.job_id,
                    "checkpoint",
                    _checkpoint_bytes(state),
                    iteration=state.iteration,
                )
        return status


def _succeed(sessions, claim, built, out, run) -> str:
    res = core.hypergradient(built.problem, out.hparams, built.dynamics, built.estimator)
    metrics = {k: float(v) for k, v in built.problem.metrics(res.params, out.hparams).items()}
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
    return "succeeded"


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
    ok = repo.finish_job(s, claim, "succeeded", summary=summary, iteration=out.state.iteration)
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
            return repo.finish_job(s, claim, "failed", error=error)

    return "failed" if _retrying(fail, settings.store_patience_s) else "lost"
