"""Redis restarts with jobs queued and running: no job is lost, and every worker carries on.

Redis is only the transport: PostgreSQL holds every job, and the reaper sends a job queued
for longer than ``requeue_queued_after_s`` again when the broker's queue is empty. Without
persistence a restart drops the queued messages (and kombu's exchange bindings); with the
append-only file they survive. Either way every job must end ``succeeded``. A Celery worker
that reconnects but never consumes again (celery#9054 and its relatives) shows up here as a
worker that runs none of the jobs submitted after the restart.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.factories import tiny_spec
from tests.faults.reference import trace_gaps
from tests.faults.services import record

ITERATIONS = 60


def _spec(i: int) -> dict:
    return tiny_spec(iterations=ITERATIONS, steps=1000, name=f"job-{i}")  # about 1 s each


def _resent(cluster) -> int:
    pattern = re.compile(rb"reaper resent (\d+) job")
    return sum(int(n) for w in cluster.workers.values() for n in pattern.findall(
        w.log_path.read_bytes()))  # fmt: skip


@pytest.mark.parametrize("appendonly", [False, True], ids=["no-persistence", "aof"])
def test_no_job_is_lost_and_workers_carry_on_when_redis_restarts(cluster_factory, appendonly):
    cluster = cluster_factory(appendonly=appendonly)
    a, b = cluster.workers_up("a", "b")
    jobs = [cluster.submit(_spec(i)) for i in range(6)]
    # two running (one per worker), the rest waiting in Redis
    cluster.wait(
        jobs[0],
        lambda _: sum(cluster.job(j).status == "running" for j in jobs) == 2,
        what="two jobs running",
    )
    in_redis_before = cluster.redis.llen(cluster.queue)
    cluster.redis.restart(down_s=1.0)
    in_redis_after = cluster.redis.llen(cluster.queue)
    t_restart = time.monotonic()
    done = [cluster.wait_done(j, timeout=60) for j in jobs]
    recovered_s = time.monotonic() - t_restart
    assert [j.status for j in done] == ["succeeded"] * len(jobs), cluster.tails()
    lost_points = 0
    for j in jobs:
        trace = cluster.trace(j)
        missing, doubled = trace_gaps(trace["iteration"], ITERATIONS)
        assert (missing, doubled) == (0, 0), (j, trace["iteration"])
        lost_points += missing
    # the workers still consume: each of them runs some of the jobs submitted now
    assert a.alive() and b.alive()
    after = [cluster.submit(_spec(10 + i)) for i in range(4)]
    done_after = [cluster.wait_done(j, timeout=30) for j in after]
    assert [j.status for j in done_after] == ["succeeded"] * len(after), cluster.tails()
    ran_on = {j.worker for j in done_after}
    assert ran_on == {a.ident, b.ident}, (ran_on, cluster.tails())
    record(
        f"broker_restart_{'aof' if appendonly else 'no_persistence'}",
        redis_restarts_survived=cluster.redis.restarts,
        appendonly=appendonly,
        messages_in_redis_before=in_redis_before,
        messages_in_redis_after=in_redis_after,
        messages_lost_by_redis=in_redis_before - in_redis_after,
        reaper_resends=_resent(cluster),
        seconds_to_finish_after_restart=round(recovered_s, 1),
        jobs=len(jobs) + len(after),
        jobs_lost=0,
        trace_points_lost=lost_points,
        workers_consuming_after_restart=len(ran_on),
    )
