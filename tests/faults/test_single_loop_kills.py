"""A SIGKILLed worker mid-way through a SABA job: resumed from its checkpoint, bit for bit."""

from __future__ import annotations

import numpy as np

from jobs.specs.job import parse_spec
from tests.factories import tiny_spec
from tests.faults.reference import trace_gaps

ITERATIONS = 4000
CHECKPOINT_EVERY = 250


def _reference(spec):
    from worker.build import build
    from worker.methods import fit_job

    parsed = parse_spec(spec)
    out = fit_job(build(parsed), parsed)
    return out.history["outer_loss"], out.hparams.numpy()


def test_a_killed_saba_job_resumes_with_its_memory_exactly(cluster_factory):
    cluster = cluster_factory(
        BILEVEL_CHECKPOINT_EVERY_N=str(CHECKPOINT_EVERY), BILEVEL_FLUSH_EVERY_S="0.05"
    )
    cluster.workers_up("a", "b")
    spec = tiny_spec(iterations=ITERATIONS)
    spec["hypergradient"] = {"method": "saba"}
    spec["outer"].update(schedule="constant", lr=0.01)
    spec["diagnostics"]["every"] = 0
    job_id = cluster.submit(spec, max_attempts=2)
    # between two checkpoints: the resumed attempt must rewrite the points past the first
    cluster.wait(
        job_id,
        lambda j: (
            j.status == "running"
            and j.iteration >= CHECKPOINT_EVERY + 50
            and 50 <= j.iteration % CHECKPOINT_EVERY <= 200
        ),
        what=f"the job past iteration {CHECKPOINT_EVERY + 50}",
    )
    victim = cluster.holder(job_id)
    victim.kill()
    victim.launch()
    job = cluster.wait_done(job_id, timeout=120)
    assert job.status == "succeeded", (job.error, cluster.tails())
    assert job.attempts == 2
    trace = cluster.trace(job_id)
    assert trace_gaps(trace["iteration"], ITERATIONS) == (0, 0)
    losses, hparams = _reference(spec)
    assert trace["outer_loss"] == losses  # the SAGA memory came back with the checkpoint
    np.testing.assert_array_equal(cluster.hparams(job_id), hparams)
