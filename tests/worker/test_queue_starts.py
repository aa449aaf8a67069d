"""The pool's estimated starts against the embedded executor running jobs of a fixed length.

Each job sleeps a fixed time per hyper-iteration (its length is that, plus a few ms of
fitting); five queue behind a running one. The estimates read while the first runs are
compared with the starts measured. And an idle executor counts as a live worker.
"""

from __future__ import annotations

import time
from datetime import timedelta

from jobs.specs.job import parse_spec
from jobs.store import repo
from jobs.store.models import Job, utcnow
from tests.factories import team_with_key, tiny_spec, wait_until
from worker.local import NAME, LocalExecutor
from worker.settings import WorkerSettings

SETTINGS = WorkerSettings(flush_every_s=0.05, lease_s=30, torch_threads=1, reap_every_s=0.5)
ITERATIONS, SLEEP_S = 12, 0.25  # a job of 3 s


def sleep_per_iteration(record) -> None:
    """The jobs' fixed length (runs in the job process: module level, so it pickles)."""
    time.sleep(SLEEP_S)


def _job(sessions, job_id) -> Job:
    with sessions() as s:
        return s.get(Job, job_id)


def _submit(sessions, executor, team_id, n):
    ids = []
    for _ in range(n):
        with sessions.begin() as s:
            job, _ = repo.create_job(s, team_id, parse_spec(tiny_spec(iterations=ITERATIONS)))
        ids.append(job.id)
        executor.send(job.id)
    return ids


def test_estimates_for_positions_1_to_5_are_within_30_percent_of_the_measured_starts(
    sqlite_sessions,
):
    sessions = sqlite_sessions
    team_id, _ = team_with_key(sessions)
    executor = LocalExecutor(sessions, SETTINGS, on_record=sleep_per_iteration).start()
    try:
        # three of the same shape first: the history the estimates take the median of (the
        # first job of a fresh job process is the slow one)
        first = _submit(sessions, executor, team_id, 3)
        wait_until(lambda: _job(sessions, first[-1]).status == "succeeded", 180, "the history")
        jobs = _submit(sessions, executor, team_id, 6)
        wait_until(lambda: _job(sessions, jobs[0]).eta_s is not None, 60, "an ETA", poll=0.02)
        with sessions() as s:
            view = repo.pool_view(s, repo.Policy(worker_alive_s=SETTINGS.lease_s), team_id)
        now = utcnow()
        wait_until(lambda: _job(sessions, jobs[-1]).status == "succeeded", 180, "the last job")
    finally:
        executor.stop(timeout=30)
    estimate = {q.id: q.estimated_start_s for q in view.queued}
    assert [q.position for q in view.queued] == [1, 2, 3, 4, 5]
    for k, job_id in enumerate(jobs[1:], start=1):
        started = (_job(sessions, job_id).running_since - now).total_seconds()
        est = estimate[job_id]
        assert est is not None and abs(est - started) <= 0.3 * started, (k, est, started)
        print(f"position {k}: estimated {est:.2f} s, started after {started:.2f} s")


def test_an_idle_embedded_executor_is_a_live_worker_until_it_stops(sqlite_sessions):
    sessions = sqlite_sessions
    policy = repo.Policy(worker_alive_s=SETTINGS.lease_s)
    executor = LocalExecutor(sessions, SETTINGS).start()
    try:
        with sessions() as s:
            assert list(repo.live_workers(s, policy)) == [NAME]
            seen = repo.live_workers(s, policy)[NAME]
        # it beats again while idle (every reap), so it does not age out
        wait_until(lambda: _seen(sessions, policy) > seen, 10, "a second beat", poll=0.1)
        assert utcnow() - _seen(sessions, policy) < timedelta(seconds=SETTINGS.lease_s)
    finally:
        executor.stop(timeout=30)
    with sessions() as s:
        assert repo.live_workers(s, policy) == {}


def _seen(sessions, policy):
    with sessions() as s:
        return repo.live_workers(s, policy)[NAME]
