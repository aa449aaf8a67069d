"""The watchdog: a job that stops making progress fails at once and its process is replaced.

Real parts: a spawned job process, the store (PostgreSQL for the supervisor, SQLite for the
embedded executor), faults injected through ``on_record`` (``tests.faults.hooks``). Bounds
are a few seconds; the waits around them are generous, for a loaded machine.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid

import pytest
from sqlalchemy import select

from jobs import repo
from jobs.models import Job, JobEvent
from jobs.specs.job import parse_spec
from tests.factories import queued_job, team_with_key, tiny_spec, wait_until
from tests.faults.hooks import (
    hang_at_second_iteration,
    hung_marker,
    mark_and_hang_at_second_iteration,
)
from worker.local import LocalExecutor
from worker.outcome import Outcome
from worker.settings import WorkerSettings
from worker.watchdog import CANCEL_GRACE_S, GRACE_S, Supervisor

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


def _kill_job_process_from_outside(supervisor, sessions, job_id) -> Outcome:
    """Run the job under ``supervisor`` and SIGKILL its process, as the OOM killer would:
    the supervisor is not asked, it only sees its job process gone."""
    got: list[Outcome] = []
    run = threading.Thread(target=lambda: got.append(supervisor.execute(
        job_id, on_record=mark_and_hang_at_second_iteration)))  # fmt: skip
    killed = supervisor.pid
    marker = hung_marker(killed)
    run.start()
    try:
        # the job process holds the claim, and hangs
        wait_until(marker.exists, 180, "the job's second iteration", poll=0.1)
    finally:
        os.kill(killed, signal.SIGKILL)
        run.join(180)
        marker.unlink(missing_ok=True)
    assert not run.is_alive() and got, "the supervisor did not see its job process die"
    assert supervisor.pid not in (killed, None)  # a fresh job process for the next job
    return got[0]


def test_a_job_process_killed_from_outside_requeues_its_job_at_once_and_it_runs_again(
    own_pg_sessions, supervisor
):
    sessions = own_pg_sessions
    sent: list[tuple[uuid.UUID, str]] = []
    supervisor.requeue = lambda job_id, queue: sent.append((job_id, queue))
    # stall_s far off: only the kill can end the hang
    job_id = queued_job(sessions, tiny_spec(iterations=5, stall_s=600))
    assert _kill_job_process_from_outside(supervisor, sessions, job_id) == Outcome.CRASHED
    job = _job(sessions, job_id)
    # back in the queue when execute returns, its lease (30 s) given up rather than left to
    # expire for the reaper (none runs here), and the attempt counted
    assert job.status == "queued" and job.lease_until is None and job.worker is None
    assert job.attempts == 1 and job.error is None
    assert sent == [(job_id, "cpu")]  # sent again, as the reaper sends what it requeues
    with sessions() as s:
        last = s.scalars(select(JobEvent).where(JobEvent.job_id == job_id)
                         .order_by(JobEvent.id.desc())).first()  # fmt: skip
    assert (last.from_status, last.to_status, last.attempt) == ("running", "queued", 1)
    assert last.detail == {"reason": "job process crashed"}
    # the message it was sent again with runs it, on the fresh job process
    assert supervisor.execute(job_id) == Outcome.SUCCEEDED
    job = _job(sessions, job_id)
    assert job.status == "succeeded" and job.attempts == 2
    assert job.summary["pid"] == supervisor.pid


def test_a_job_whose_process_dies_in_its_last_attempt_fails_rather_than_loops(
    own_pg_sessions, supervisor
):
    sessions = own_pg_sessions
    sent: list[tuple[uuid.UUID, str]] = []
    supervisor.requeue = lambda job_id, queue: sent.append((job_id, queue))
    team_id, _ = team_with_key(sessions)
    with sessions.begin() as s:
        job, _ = repo.create_job(s, team_id, parse_spec(tiny_spec(iterations=5, stall_s=600)),
                                 max_attempts=2)  # fmt: skip
    for attempt, outcome in ((1, Outcome.CRASHED), (2, Outcome.FAILED)):
        assert _kill_job_process_from_outside(supervisor, sessions, job.id) == outcome
        assert _job(sessions, job.id).attempts == attempt
    done = _job(sessions, job.id)
    assert done.status == "failed" and done.lease_until is None and done.finished_at
    assert done.error["type"] == "JobProcessCrashed", done.error
    assert "attempt 2 (max_attempts=2)" in done.error["detail"]
    assert "exit code -9" in done.error["detail"]
    assert sent == [(job.id, "cpu")]  # the first crash only
    assert [e[0] for e in _events(sessions, job.id)] == [
        "queued", "running", "queued", "running", "failed"
    ]  # fmt: skip


def test_a_hung_job_asked_to_stop_is_cancelled_within_the_grace_not_at_stall_s(
    own_pg_sessions, supervisor
):
    sessions = own_pg_sessions
    # stall_s far off: only the cancel can end the hang soon
    job_id = queued_job(sessions, tiny_spec(iterations=50, stall_s=600))
    hung = supervisor.pid
    marker = hung_marker(hung)
    got: list[Outcome] = []
    run = threading.Thread(target=lambda: got.append(supervisor.execute(
        job_id, on_record=mark_and_hang_at_second_iteration)))  # fmt: skip
    run.start()
    try:
        wait_until(marker.exists, 180, "the job's second iteration", poll=0.1)
        with sessions.begin() as s:  # what POST /v1/jobs/{id}/cancel does for a running job
            repo.cancel_job(s, s.get(Job, job_id))
        t0 = time.monotonic()
        run.join(CANCEL_GRACE_S + SLACK_S)
        took = time.monotonic() - t0
    finally:
        marker.unlink(missing_ok=True)
    assert not run.is_alive() and got == [Outcome.CANCELLED], got
    assert CANCEL_GRACE_S <= took < CANCEL_GRACE_S + SLACK_S, took
    job = _job(sessions, job_id)
    assert job.status == "cancelled" and job.lease_until is None and job.finished_at
    assert job.summary["cancelled_by"] == "watchdog" and job.summary["pid"] == hung
    assert job.summary["iteration"] == 2 and job.error is None
    assert _events(sessions, job_id)[-1] == ("cancelled", None)
    print(f"\nhung job cancelled {took:.2f} s after the request: {job.summary['detail']}")
    # the next job runs on a fresh process
    after = queued_job(sessions, tiny_spec(iterations=1))
    assert supervisor.execute(after) == Outcome.SUCCEEDED
    assert _job(sessions, after).summary["pid"] == supervisor.pid != hung


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
