"""SIGKILLed workers, again and again: the job resumes exactly where its checkpoint was."""

from __future__ import annotations

import numpy as np

from tests.factories import tiny_spec
from tests.faults.reference import reference, trace_gaps
from tests.faults.services import record

KILLS = 3
ITERATIONS = 300
CHECKPOINT_EVERY = 25


def test_a_job_survives_three_sigkills_with_a_complete_trace_and_exact_hparams(
    cluster_factory,
):
    cluster = cluster_factory(
        BILEVEL_CHECKPOINT_EVERY_N=str(CHECKPOINT_EVERY), BILEVEL_FLUSH_EVERY_S="0.05"
    )
    cluster.workers_up("a", "b")
    # about 15 ms an iteration: long enough to kill it three times mid-job
    spec = tiny_spec(iterations=ITERATIONS, steps=1000)
    job_id = cluster.submit(spec, max_attempts=KILLS + 1)
    killed_at = []
    for k in range(1, KILLS + 1):
        # mid-job and between checkpoints: the resumed attempt must drop the points
        # written past its checkpoint and write them again, identically
        floor = CHECKPOINT_EVERY * k + 5
        cluster.wait(
            job_id,
            lambda j, k=k, floor=floor: (
                j.status == "running"
                and j.attempts == k
                and j.iteration >= floor
                and 5 <= j.iteration % CHECKPOINT_EVERY <= 20
            ),
            what=f"attempt {k} past iteration {floor}",
        )
        victim = cluster.holder(job_id)
        victim.kill()
        killed_at.append(cluster.job(job_id).iteration)
        # a supervisor starts it again; meanwhile the other worker's reaper finds the
        # expired lease and resumes the job from its checkpoint
        victim.launch()
        assert cluster.job(job_id).status != "succeeded"
    job = cluster.wait_done(job_id, timeout=90)
    assert job.status == "succeeded", (job.error, cluster.tails())
    assert job.attempts == KILLS + 1
    events = cluster.events(job_id)
    assert events.count(("queued", "lease expired")) == KILLS, events
    trace = cluster.trace(job_id)
    missing, doubled = trace_gaps(trace["iteration"], ITERATIONS)
    assert trace["iteration"] == list(range(1, ITERATIONS + 1))
    losses, hparams = reference(spec)
    # resume is exact: bit for bit the uninterrupted run
    assert trace["outer_loss"] == losses
    np.testing.assert_array_equal(cluster.hparams(job_id), hparams)
    record(
        "worker_kills",
        kills_survived=len(killed_at),
        killed_at_iterations=killed_at,
        attempts=job.attempts,
        jobs_lost=0,
        trace_points_lost=missing,
        trace_points_doubled=doubled,
        hparams_bit_exact=True,
    )
