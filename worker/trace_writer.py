"""The trace writer: a thread that commits a running job's trace behind its training loop."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

import core
from jobs.store import repo
from jobs.store.repo import LeaseState
from worker.checkpoint import checkpoint_bytes
from worker.errors import LeaseLost
from worker.retry import retrying
from worker.settings import WorkerSettings

__all__ = ["TraceWriter"]

log = logging.getLogger(__name__)


class TraceWriter(threading.Thread):
    """Writes the trace on its own thread, so that the training loop never waits on a commit.

    The loop hands records over (``submit``, a list append under a lock) and goes on. This
    thread takes everything handed over so far (the records, the newest checkpoint and
    progress) and writes it in one fenced transaction, retried through connection failures.
    Hand-overs are written in order, and a checkpoint at iteration i goes with every record
    handed over before it, so it commits in the same transaction as, or after, every point
    <= i.

    What it learns reaches the loop at its next iteration: ``status`` (``LeaseState.CANCEL``), and
    ``error``, which the loop re-raises (``LeaseLost``, ``StoreUnavailable``). Before a job
    ends, the loop calls ``close``, which waits until everything handed over is written.
    The lock only guards the hand-over; the transaction runs outside it.
    """

    # Records handed over but not yet written, past which ``submit`` waits: a store that
    # is down stalls the loop (as a synchronous write did) instead of filling the memory.
    max_pending = 100_000

    def __init__(
        self, sessions: sessionmaker[Session], claim: repo.Claim, settings: WorkerSettings
    ):
        super().__init__(daemon=True, name=f"trace-writer-{claim.job_id}")
        self.sessions, self.claim, self.settings = sessions, claim, settings
        self.status = LeaseState.OK
        # a search member's pruner, asked after each batch is committed (worker.pruning)
        self.prune_check: Callable[[], bool] | None = None
        self.prune = False
        self.error: BaseException | None = None
        self._cond = threading.Condition()
        self._records: list[dict[str, Any]] = []
        self._state: core.FitState | None = None  # the newest checkpoint handed over
        self._progress: dict[str, Any] | None = None
        self._closing = False

    def submit(
        self,
        records: list[dict[str, Any]],
        state: core.FitState | None,
        progress: dict[str, Any],
    ) -> None:
        """Hand over ``records`` (and a checkpoint of ``state``) to be written.

        Args:
            records: trace points, one per hyper-iteration, in order.
            state: the state to checkpoint with them, or ``None``.
            progress: ``iteration``, ``eta_s`` and ``summary`` for the job's row.
        """
        with self._cond:
            while len(self._records) >= self.max_pending and self.error is None:
                self._cond.wait()
            self._records += records
            self._state = state if state is not None else self._state
            self._progress = progress
            self._cond.notify_all()

    @property
    def closing(self) -> bool:
        """Whether :meth:`close` was called (nothing handed over later is written)."""
        return self._closing

    def check(self) -> None:
        """Raise the error that ended this thread, if any."""
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

    def _write(
        self,
        records: list[dict[str, Any]],
        state: core.FitState | None,
        progress: dict[str, Any],
    ) -> None:
        # serialised here, off the loop: the state is a snapshot (core.fit copies tensors)
        checkpoint = (state.iteration, checkpoint_bytes(state)) if state is not None else None

        def write() -> LeaseState:
            with self.sessions.begin() as s:
                # fenced first: a lost lease writes no point (one call: migration 0021)
                lease_s = self.settings.lease_s
                status = repo.heartbeat_with_trace(s, self.claim, lease_s, records, **progress)
                if status == LeaseState.LOST:
                    return status
                if checkpoint is not None:
                    iteration, data = checkpoint
                    repo.save_artifact(
                        s, self.claim.job_id, "checkpoint", data, iteration=iteration
                    )
            return status

        status = retrying(write, self.settings.store_patience_s)
        if status == LeaseState.LOST:
            raise LeaseLost
        if status == LeaseState.CANCEL:
            self.status = LeaseState.CANCEL
        if self.prune_check is not None and records and not self.prune:
            try:
                self.prune = self.prune_check()
            except Exception:  # a pruner's trouble must not fail the member: it runs on
                log.warning("pruning check failed for %s", self.claim.job_id, exc_info=True)
