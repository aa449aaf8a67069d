"""The embedded executor in the pool: an idle one counts as a live worker.

The estimated starts are checked on a simulated queue of fixed job lengths
(tests/jobs/test_queue_estimate.py): measured against wall-clock starts on a shared
machine, position 1 once missed by 60% for no fault of the estimate, so no timed test.
"""

from __future__ import annotations

import time
from datetime import timedelta

from jobs.specs.job import parse_spec
from jobs.store import repo
from jobs.store.models import Job, utcnow
from tests.factories import tiny_spec, wait_until
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
