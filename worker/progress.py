"""The running job's progress: ``core.fit``'s callback, once per hyper-iteration."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

import core
from jobs.store.repo import LeaseState
from worker.divergence import DivergenceWatch
from worker.errors import Diverged, LeaseLost, TimeLimitExceeded
from worker.heartbeat import Heartbeat
from worker.learned import HparamsPath
from worker.settings import WorkerSettings
from worker.shutdown import shutdown_requested
from worker.trace_writer import TraceWriter

__all__ = ["Progress"]


class Progress:
    """``core.fit``'s callback: buffers records and hands them to the writer in batches.

    It runs once per hyper-iteration on the training loop's thread, so it does as little as
    it can: keep the record, track the best loss, and every ``flush_every_s`` (or
    ``flush_every_n`` records) hand the batch over, with a checkpoint when one is due. Its
    return value asks ``core.fit`` to stop (a cancel; or a shutdown or the scheduler's
    preemption: ``preempted``).

    Args:
        settings: the worker's flush and checkpoint cadence.
        beat: the lease's heartbeat, whose ``state`` may say ``LeaseState.CANCEL`` or ``LOST``.
        writer: the trace writer the batches go to.
        start: the iteration the run starts after (a checkpoint's, or 0).
        iterations: the spec's ``outer.iterations``, for the ETA.
        best: ``(outer loss, iteration)`` of the best point so far, or ``None``.
        on_record: called with every record after it is kept (tests, fault hooks).
    """

    def __init__(
        self,
        settings: WorkerSettings,
        beat: Heartbeat,
        writer: TraceWriter,
        start: int,
        iterations: int,
        best: tuple[float, int] | None,
        on_record: Callable[[dict[str, Any]], None] | None,
    ):
        self.settings, self.beat, self.writer = settings, beat, writer
        self.iterations = iterations
        self.buffer: list[dict[str, Any]] = []
        # guards the buffer against the last flush (worker.last_flush), run on another
        # thread while this one hangs inside a hyper-iteration
        self.lock = threading.Lock()
        self.start_iteration = self.iteration = start
        self.t0 = self.last_flush = self.last_ckpt = time.monotonic()
        self.ckpt_iteration = start
        self.best = best
        self.last_loss: float | None = None
        self.on_record = on_record
        self.preempted = False
        self.ran_before_s = 0.0
        self.time_limit: tuple[float, str] | None = None  # (seconds, the setting's name)
        # the cost of this attempt's hyper-iterations: seconds (estimate and update) and
        # the peak bytes of their hypergradients (core.Metered)
        self.time_sum = 0.0
        self.timed = 0
        self.peak_bytes: float | None = None
        self.extra_summary: dict[str, Any] = {}  # e.g. auto-K's choice, set by the runner
        # divergence warnings go in the summary; the runner sets stop_on_divergence
        self.watch = DivergenceWatch()
        self.stop_on_divergence = False
        self.path = HparamsPath()  # the small hparams as they went, for the job's pictures
        # outer.stop_when_stalled (worker.pruning.Stall), set by the runner; and whether it
        # or the study's pruner stopped the loop
        self.stall: Callable[[dict[str, Any]], bool] | None = None
        self.converged = False
        self.pruned = False

    @property
    def cancelled(self) -> bool:
        """Whether a cancel was requested (seen by the heartbeat or by the writer)."""
        return self.writer.status == LeaseState.CANCEL or self.beat.state == LeaseState.CANCEL

    def __call__(self, record: dict[str, Any], state: core.FitState) -> bool:
        if self.beat.state == LeaseState.LOST:
            raise LeaseLost
        self.writer.check()  # a lost lease or a store given up on stops the loop here
        with self.lock:
            self.buffer.append(dict(record))  # on_record (user code) must not change it
            self.iteration = int(record["iteration"])
        loss = float(record["outer_loss"])
        self.last_loss = loss
        self._cost(record)
        self.path.add(self.iteration, state.hparams)
        if math.isfinite(loss) and (self.best is None or loss < self.best[0]):
            self.best = (loss, self.iteration)
        if self.on_record is not None:
            self.on_record(record)
        flagged = self.watch.observe(record)
        if flagged and self.stop_on_divergence:
            # raised with this iteration buffered: the failure path writes it and the summary
            raise Diverged(f"Diverged: {flagged[0]['message']}", iteration=self.iteration)
        now = time.monotonic()
        if self.time_limit is not None and self.run_s(now) > self.time_limit[0]:
            # raised with this iteration buffered: the failure path writes it
            limit, name = self.time_limit
            raise TimeLimitExceeded(
                f"time limit exceeded: ran {self.run_s(now):.2f} s over its attempts, past "
                f"{name}={limit:g}; stopped after iteration {self.iteration}",
                iteration=self.iteration,
            )
        if shutdown_requested() or self.beat.state == LeaseState.PREEMPT:
            self.flush(state)  # with a checkpoint at this very iteration
            self.preempted = True
            return True
        if self.writer.prune and not self.cancelled:  # at this hyper-iteration's boundary
            self.pruned = True
            return True
        if self.stall is not None and self.stall(record):
            self.converged = True
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

    def _cost(self, record: dict[str, Any]) -> None:
        t = record.get("time_s")
        if isinstance(t, float) and math.isfinite(t):
            self.time_sum += t
            self.timed += 1
        peak = record.get("peak_bytes")
        if isinstance(peak, float) and (self.peak_bytes is None or peak > self.peak_bytes):
            self.peak_bytes = peak

    def eta(self) -> float | None:
        """Seconds left at this attempt's rate; ``None`` before its first iteration."""
        done = self.iteration - self.start_iteration
        if done <= 0:
            return None
        rate = (time.monotonic() - self.t0) / done
        return rate * (self.iterations - self.iteration)

    def run_s(self, now: float | None = None) -> float:
        """Running time of this job over all its attempts so far."""
        return self.ran_before_s + (now or time.monotonic()) - self.t0

    def summary(self) -> dict[str, Any]:
        """The job row's ``summary`` so far: running time, last and best outer loss, cost.

        ``final_outer_loss`` is the outer loss of the latest hyper-iteration (the runner
        replaces it, as the job succeeds, with the loss at the hyperparameters it returns);
        ``best_outer_loss`` the smallest of any iteration, at ``best_iteration``.
        ``warnings`` lists what :class:`~worker.divergence.DivergenceWatch` flagged.
        ``s_per_iteration`` is the mean time of a hyper-iteration's estimate and update in
        this attempt, ``peak_bytes`` the largest hypergradient memory of any of them.
        """
        return {
            "run_s": round(self.run_s(), 3),
            "final_outer_loss": self.last_loss,
            "best_outer_loss": self.best[0] if self.best else None,
            "best_iteration": self.best[1] if self.best else None,
            "s_per_iteration": self.time_sum / self.timed if self.timed else None,
            "peak_bytes": self.peak_bytes,
            "warnings": self.watch.warnings,
            **self.extra_summary,
        }

    def flush(self, state: core.FitState | None) -> None:
        """Hand the buffered records (and a checkpoint of ``state``) to the writer."""
        with self.lock:
            self._hand_over(state)
        self.last_flush = time.monotonic()
        if state is not None:
            self.last_ckpt, self.ckpt_iteration = self.last_flush, state.iteration

    def _hand_over(self, state: core.FitState | None) -> None:
        progress = {"iteration": self.iteration, "eta_s": self.eta(), "summary": self.summary()}
        self.writer.submit(self.buffer, state, progress)
        self.buffer = []

    def flush_before_kill(self) -> None:
        """Write the buffered records and wait for them, from another thread, before a kill.

        The lock is kept: should the loop wake up, it waits here until the process exits
        (``worker.last_flush``). Nothing is written once the writer is closing: the job is
        ending by itself, and its own path writes what is left.
        """
        self.lock.acquire()
        if self.writer.is_alive() and not self.writer.closing:
            self._hand_over(None)
            self.writer.close(check=False)

    def close(self) -> None:
        """Write every record so far, wait for it, and end the writer (raising its error)."""
        self.flush(None)
        self.writer.close()
