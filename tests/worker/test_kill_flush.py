"""No lost points: a killed job's stored trace and its ``jobs.iteration`` agree.

The watchdog asks a job it kills for a stall or a time limit to write the points it holds
first (``worker.last_flush``); a job process SIGKILLed with no chance to flush goes back to
the queue at its checkpoint, its trace cut back to there, and resumes exactly. Real parts: a
spawned job process, PostgreSQL, faults through ``on_record`` (``tests.faults.hooks``).
"""

from __future__ import annotations

import functools
import os
import signal
import threading
import time

import pytest
from sqlalchemy import select

from jobs.store.models import Job, TracePoint
from tests.factories import queued_job, tiny_spec, wait_until
from tests.faults.hooks import hang_at_second_iteration, hung_marker, mark_and_hang_at
from tests.faults.reference import reference
from worker.outcome import Outcome
from worker.settings import WorkerSettings
from worker.watchdog import Supervisor

# the loop never flushes by itself (no flush, no checkpoint before the hang): every point
# in the store after the kill was written by the last flush
NO_FLUSH = {"flush_every_s": 3600.0, "flush_every_n": 10**6, "checkpoint_every_s": 3600.0}


def _stored(sessions, job_id) -> tuple[list[int], list[float | None], Job]:
    with sessions() as s:
        rows = s.execute(
            select(TracePoint.iteration, TracePoint.outer_loss)
            .where(TracePoint.job_id == job_id)
            .order_by(TracePoint.iteration)
        ).all()
        job = s.get(Job, job_id)
        assert job is not None
        s.expunge(job)
    return [r[0] for r in rows], [r[1] for r in rows], job


def _supervisor(sessions, **settings) -> Supervisor:
    got = WorkerSettings(lease_s=30, torch_threads=1, **settings)
    return Supervisor(sessions, got, worker="test-worker").start(wait=True)


@pytest.mark.parametrize("kill", ["time_limit", "stall"])
def test_a_job_killed_by_the_watchdog_keeps_every_iteration_up_to_the_kill(own_pg_sessions, kill):
    sessions = own_pg_sessions
    bound = {"time_limit_s": 2.0, "stall_s": 600} if kill == "time_limit" else {"stall_s": 2.0}
    job_id = queued_job(sessions, tiny_spec(iterations=50, **bound))
    sup = _supervisor(sessions, **NO_FLUSH)
    try:
        # iterations 1 and 2 complete, then the hook hangs inside the third
        assert sup.execute(job_id, on_record=hang_at_second_iteration) == Outcome.FAILED
    finally:
        sup.close()
    iterations, losses, job = _stored(sessions, job_id)
    expected = {"time_limit": "TimeLimitExceeded", "stall": "IterationStalled"}[kill]
    assert job.error["type"] == expected, job.error
    assert iterations == [1, 2] and all(v is not None for v in losses)
    assert job.iteration == job.error["iteration"] == 2


def test_without_a_grace_the_killed_job_records_only_what_was_written(own_pg_sessions):
    # the same kill with flush_grace_s=0: the buffered points are lost, and the job says so
    # (error.iteration is never ahead of the stored trace)
    sessions = own_pg_sessions
    job_id = queued_job(sessions, tiny_spec(iterations=50, stall_s=2.0))
    sup = _supervisor(sessions, flush_grace_s=0, **NO_FLUSH)
    try:
        assert sup.execute(job_id, on_record=hang_at_second_iteration) == Outcome.FAILED
    finally:
        sup.close()
    iterations, _, job = _stored(sessions, job_id)
    assert iterations == [] and job.iteration == job.error["iteration"] == 0
    assert "after iteration 2" in job.error["detail"]  # what the supervisor was told


def test_a_sigkilled_job_stands_at_its_checkpoint_and_resumes_exactly(own_pg_sessions):
    sessions = own_pg_sessions
    spec = tiny_spec(iterations=8, stall_s=600)
    job_id = queued_job(sessions, spec)
    # every point flushed at once, a checkpoint every 3 iterations: at the hang in iteration
    # 5's record (before its flush), points 1..4 are stored and the checkpoint is at 3
    sup = _supervisor(sessions, flush_every_s=0.01, flush_every_n=1, checkpoint_every_n=3)
    sent: list[object] = []
    sup.requeue = lambda job, queue: sent.append(job)
    try:
        got: list[Outcome] = []
        hook = functools.partial(mark_and_hang_at, 5)
        run = threading.Thread(target=lambda: got.append(sup.execute(job_id, on_record=hook)))
        killed = sup.pid
        assert killed is not None
        marker = hung_marker(killed)
        run.start()
        try:
            wait_until(marker.exists, 180, "the job's fifth iteration", poll=0.1)
            # the fifth point is handed to the writer after on_record: wait for 1..4
            wait_until(lambda: len(_stored(sessions, job_id)[0]) >= 4, 60, "points 1..4")
            time.sleep(0.2)
        finally:
            os.kill(killed, signal.SIGKILL)  # as the OOM killer would: no chance to flush
            run.join(180)
            marker.unlink(missing_ok=True)
        assert got == [Outcome.CRASHED] and sent == [job_id]
        iterations, _, job = _stored(sessions, job_id)
        assert job.status == "queued"
        # the stored trace, the job's iteration and the checkpoint it resumes from agree
        assert iterations == [1, 2, 3] and job.iteration == 3
        with sessions() as s:
            from jobs.store import repo

            assert repo.checkpoint_iteration(s, job_id) == 3
        assert sup.execute(job_id) == Outcome.SUCCEEDED
    finally:
        sup.close()
    iterations, losses, job = _stored(sessions, job_id)
    assert job.status == "succeeded" and job.attempts == 2
    assert iterations == list(range(1, 9)) and job.iteration == 8
    want, _ = reference(spec)
    assert losses == [float(v) for v in want]  # bit for bit: the resume was exact
