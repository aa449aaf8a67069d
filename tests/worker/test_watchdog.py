"""The watchdog: a job that stops making progress fails at once and its process is replaced.

Real parts: a spawned job process, the store (PostgreSQL for the supervisor, SQLite for the
embedded executor), faults injected through ``on_record`` (``tests.faults.hooks``). Bounds
are a few seconds; the waits around them are generous, for a loaded machine.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from jobs.models import Job, JobEvent
from tests.factories import queued_job, tiny_spec, wait_until
from tests.faults.hooks import hang_at_second_iteration, kill_job_process_at_second_iteration
from worker.local import LocalExecutor
from worker.outcome import Outcome
from worker.settings import WorkerSettings
from worker.watchdog import GRACE_S, Supervisor

SETTINGS = WorkerSettings(flush_every_s=0.05, lease_s=30, torch_threads=1)
STALL_S = 2.0
# the bound plus the watchdog's poll, plus how late a loaded machine may be
SLACK_S = 20.0


def _job(sessions, job_id) -> Job:
    with sessions() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job


def _events(sessions, job_id) -> list[tuple[str, str | None]]:
    with sessions() as s:
        rows = s.execute(
            select(JobEvent.to_status, JobEvent.detail)
            .where(JobEvent.job_id == job_id)
            .order_by(JobEvent.id)
        ).all()
    return [(to, (detail or {}).get("type")) for to, detail in rows]


@pytest.fixture
def supervisor(own_pg_sessions):
    # warm before the clock starts: the figures time the job, not torch's import
    sup = Supervisor(own_pg_sessions, SETTINGS, worker="test-worker").start(wait=True)
    yield sup
    sup.close()


def test_a_stalled_job_fails_within_its_bound_and_the_next_job_runs_on_a_fresh_process(
    own_pg_sessions, supervisor
):
    sessions = own_pg_sessions
    stalled = queued_job(sessions, tiny_spec(iterations=50, stall_s=STALL_S))
    t0 = time.monotonic()
    outcome = supervisor.execute(stalled, on_record=hang_at_second_iteration)
    took = time.monotonic() - t0
    assert outcome == Outcome.FAILED
    job = _job(sessions, stalled)
    assert job.status == "failed" and job.error["type"] == "IterationStalled", job.error
    assert "stall_s (the spec's)=2" in job.error["detail"] and job.error["iteration"] == 2
    # ended by the supervisor, not by an expiring lease: released at once
    assert job.lease_until is None and job.finished_at is not None
    assert _events(sessions, stalled)[-1] == ("failed", "IterationStalled")
    assert STALL_S <= took < STALL_S + SLACK_S, took
    print(f"\nstalled job (stall_s={STALL_S:g}) ended {took:.2f} s after execute: "
          f"{job.error['detail']}")  # fmt: skip
    killed = job.error["pid"]
    assert supervisor.pid is not None and supervisor.pid != killed

    after = queued_job(sessions, tiny_spec(iterations=1))  # never reaches the hang
    assert supervisor.execute(after, on_record=hang_at_second_iteration) == Outcome.SUCCEEDED
    job = _job(sessions, after)
    assert job.summary["pid"] == supervisor.pid != killed


def test_a_job_past_its_time_limit_inside_one_iteration_fails_with_time_limit_exceeded(
    own_pg_sessions, supervisor
):
    sessions = own_pg_sessions
    # the stall bound is far; only the time limit can end this one
    job_id = queued_job(sessions, tiny_spec(iterations=50, time_limit_s=2.0, stall_s=600))
    t0 = time.monotonic()
    assert supervisor.execute(job_id, on_record=hang_at_second_iteration) == Outcome.FAILED
    took = time.monotonic() - t0
    job = _job(sessions, job_id)
    assert job.error["type"] == "TimeLimitExceeded", job.error
    assert "time_limit_s=2" in job.error["detail"] and "inside iteration 3" in job.error["detail"]
    assert job.lease_until is None
    assert 2.0 + GRACE_S <= took < 2.0 + GRACE_S + SLACK_S, took
    print(f"\njob over time_limit_s=2 ended {took:.2f} s after execute: {job.error['detail']}")


def test_a_job_process_that_dies_loses_its_attempt_to_the_reaper_and_is_replaced(
    own_pg_sessions, supervisor
):
    sessions = own_pg_sessions
    first = supervisor.pid
    job_id = queued_job(sessions, tiny_spec(iterations=50))
    outcome = supervisor.execute(job_id, on_record=kill_job_process_at_second_iteration)
    assert outcome == Outcome.CRASHED
    job = _job(sessions, job_id)
    # as when a worker is lost: still running, its lease left to expire for the reaper
    assert job.status == "running" and job.lease_until is not None
    other = queued_job(sessions, tiny_spec(iterations=3))
    assert supervisor.execute(other) == Outcome.SUCCEEDED
    assert _job(sessions, other).summary["pid"] not in (first, None)


def test_the_embedded_executor_kills_a_stalled_job_and_runs_the_next_on_a_fresh_process(
    sqlite_sessions,
):
    sessions = sqlite_sessions
    stalled = queued_job(sessions, tiny_spec(iterations=50, stall_s=STALL_S))
    executor = LocalExecutor(sessions, SETTINGS, on_record=hang_at_second_iteration).start()
    try:
        wait_until(lambda: _job(sessions, stalled).status != "queued", 180, "the stalled job's "
                   "claim", poll=0.2)  # fmt: skip
        # submitted while the first hangs, so that it cannot run first (fair share would
        # pick between two teams' jobs either way)
        after = queued_job(sessions, tiny_spec(iterations=1))  # never reaches the hang
        executor.send(after)
        wait_until(lambda: _job(sessions, after).status in ("succeeded", "failed"), 180,
                   "the job after the stalled one to end", poll=0.2)  # fmt: skip
    finally:
        executor.stop(timeout=30)
    job = _job(sessions, stalled)
    assert job.status == "failed" and job.error["type"] == "IterationStalled", job.error
    assert job.lease_until is None
    events = [e for e in _events(sessions, stalled) if e[0] != "queued"]
    assert events == [("running", None), ("failed", "IterationStalled")]
    nxt = _job(sessions, after)
    assert nxt.status == "succeeded", nxt.error
    assert nxt.summary["pid"] != job.error["pid"]
    # no job is left running, and the executor's job process ended with it
    with sessions() as s:
        assert s.scalars(select(Job.id).where(Job.status == "running")).all() == []
    assert executor.supervisor.pid is None
