"""Hung jobs on a real Celery worker: the watchdog ends them ``failed``, releases the lease
at once, and the next job runs on a fresh job process of the same worker."""

from __future__ import annotations

import time

from sqlalchemy import select

from jobs.store.models import Job
from tests.factories import tiny_spec
from tests.faults.services import record
from worker.watchdog import GRACE_S

STALL_S = 3.0
SLACK_S = 25.0  # how late a loaded machine may be, past the bound


def _running(cluster) -> list:
    with cluster.sessions() as s:
        return list(s.scalars(select(Job.id).where(Job.status == "running")))


def test_a_hung_iteration_fails_the_job_and_the_next_job_runs_on_a_fresh_process(
    cluster_factory,
):
    # lease_s is long: only the watchdog, not an expiring lease, can end these in time
    cluster = cluster_factory(crash_job="hangs", fault="hang", BILEVEL_LEASE_S="120")
    (worker,) = cluster.workers_up("a")
    stalled = cluster.submit(tiny_spec(iterations=50, name="hangs", stall_s=STALL_S))
    # its first two iterations take milliseconds: from running, it hangs at once
    cluster.wait(stalled, lambda j: j.status != "queued", timeout=120, what="its claim")
    claimed_at = time.monotonic()
    job = cluster.wait_done(stalled, timeout=STALL_S + SLACK_S + 60)
    ended_after_s = time.monotonic() - claimed_at
    assert job.status == "failed" and job.error["type"] == "IterationStalled", job.error
    assert f"stall_s (the spec's)={STALL_S:g}" in job.error["detail"], job.error
    assert job.attempts == 1 and job.lease_until is None and job.error["iteration"] == 2
    assert ended_after_s < STALL_S + SLACK_S, (ended_after_s, cluster.tails())
    assert _running(cluster) == []

    timed_out = cluster.submit(tiny_spec(iterations=50, name="hangs", time_limit_s=2.0))
    job = cluster.wait_done(timed_out, timeout=2.0 + GRACE_S + SLACK_S + 60)
    assert job.status == "failed" and job.error["type"] == "TimeLimitExceeded", job.error
    assert "time_limit_s=2" in job.error["detail"] and job.lease_until is None

    after = cluster.submit(tiny_spec(iterations=5))
    job_after = cluster.wait_done(after, timeout=120)
    assert job_after.status == "succeeded", (job_after.error, cluster.tails())
    pids = {job.error["pid"], cluster.job(stalled).error["pid"], job_after.summary["pid"]}
    assert len(pids) == 3  # each job after a kill ran on a fresh job process
    # the same Celery worker took all three: only its job process was replaced
    assert worker.alive() and {cluster.job(i).worker for i in (stalled, timed_out, after)} == {
        worker.ident
    }
    record(
        "hung_jobs",
        stall_s=STALL_S,
        stalled_ended_after_claim_s=round(ended_after_s, 2),
        stalled_detail=cluster.job(stalled).error["detail"],
        time_limit_detail=job.error["detail"],
        job_processes=len(pids),
    )
