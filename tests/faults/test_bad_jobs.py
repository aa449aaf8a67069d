"""Jobs that cannot succeed end ``failed`` with the reason named, and never loop."""

from __future__ import annotations

import time

import pytest

import core
from tests.factories import example, tiny_spec
from tests.faults.conftest import TERMINAL
from tests.faults.reference import reference, trace_gaps
from tests.faults.services import record, wait_until


def _diverging_spec() -> dict:
    # plain SGD with a huge step on the quadratic: the outer loss overflows mid-run
    spec = example("quadratic")
    spec["outer"].update(optimizer="sgd", lr=100.0, iterations=50)
    return spec


def test_a_diverging_job_and_one_over_its_time_limit_end_failed_with_the_reason_named(
    cluster_factory,
):
    cluster = cluster_factory(BILEVEL_MAX_JOB_TIME_S="60")
    cluster.workers_up("a")
    diverging = _diverging_spec()
    with pytest.raises(core.DivergenceError) as info:
        reference(diverging)
    at = info.value.iteration
    slow = tiny_spec(iterations=100_000, steps=100, time_limit_s=1.5)
    div_id, slow_id = cluster.submit(diverging), cluster.submit(slow)

    job = cluster.wait_done(div_id)
    assert job.status == "failed" and job.attempts == 1, (job.error, cluster.tails())
    assert job.error["type"] == "DivergenceError" and job.error["iteration"] == at
    assert f"hyper-iteration {at}" in job.error["detail"], job.error
    assert cluster.trace(div_id)["iteration"] == list(range(1, at))

    job = cluster.wait_done(slow_id, timeout=30)
    assert job.status == "failed" and job.attempts == 1, (job.error, cluster.tails())
    assert job.error["type"] == "TimeLimitExceeded", job.error
    assert "time_limit_s=1.5" in job.error["detail"], job.error
    stopped = job.error["iteration"]
    assert 0 < stopped == job.iteration < 100_000
    assert job.summary["run_s"] >= 1.5
    trace = cluster.trace(slow_id)
    assert trace["iteration"] == list(range(1, stopped + 1))  # kept up to the stop
    record(
        "bad_jobs",
        diverged_at_iteration=at,
        timed_out_after_iteration=stopped,
        timed_out_run_s=job.summary["run_s"],
        retries_of_failed_jobs=0,
        trace_points_lost=sum(trace_gaps(trace["iteration"], stopped)),
    )


def test_a_job_that_kills_its_worker_every_time_fails_after_max_attempts(cluster_factory):
    cluster = cluster_factory(crash_job="crasher")
    workers = cluster.workers_up("a", "b")
    job_id = cluster.submit(tiny_spec(iterations=50, name="crasher"), max_attempts=3)
    crashes = 0
    deadline = time.monotonic() + 90
    # a supervisor (systemd, Kubernetes) starts each crashed worker again
    while cluster.job(job_id).status not in TERMINAL:
        assert time.monotonic() < deadline, cluster.tails()
        for w in workers:
            if not w.alive():
                crashes += 1
                w.launch()
        time.sleep(0.05)
    job = cluster.job(job_id)
    assert job.status == "failed", (job.error, cluster.tails())
    assert job.attempts == job.max_attempts == 3
    assert job.error["type"] == "LeaseExpired" and "max_attempts=3" in job.error["detail"]
    for w in workers:
        if not w.alive():
            crashes += 1
            w.launch()
    assert crashes == 3
    # not in a loop: nothing claims it again, and the workers go on with other jobs
    ok_id = cluster.submit(tiny_spec(iterations=10))
    assert cluster.wait_done(ok_id, timeout=60).status == "succeeded", cluster.tails()
    time.sleep(2 * float(cluster.env["BILEVEL_LEASE_S"]))
    job = cluster.job(job_id)
    assert (job.status, job.attempts) == ("failed", 3)
    claims = [e for e in cluster.events(job_id) if e[0] == "running"]
    assert len(claims) == 3
    wait_until(lambda: all(w.alive() for w in workers), 5, "workers alive")
    record(
        "crash_loop",
        worker_crashes=crashes,
        claims=len(claims),
        max_attempts=job.max_attempts,
        final_status=job.status,
        error=job.error["detail"],
    )


def test_a_plugin_kind_missing_on_the_worker_fails_once_naming_the_package(cluster_factory):
    cluster = cluster_factory(pluginless=True)
    (worker,) = cluster.workers_up("a")
    # submitted where the plugin is installed (as the API's image has it): the job records it
    job_id = cluster.submit(tiny_spec(problem={"kind": "digits_mlp"}), max_attempts=3)
    assert cluster.job(job_id).plugin["package"] == "bilevel-digits-mlp"
    job = cluster.wait_done(job_id)
    assert job.status == "failed", (job.error, cluster.tails())
    assert job.attempts == 1
    assert job.error["type"] == "PluginMissing"
    assert job.error["detail"].startswith(
        "problem kind 'digits_mlp' comes from the plugin package 'bilevel-digits-mlp'"
    )
    assert "traceback" not in job.error
    # the worker goes on serving: a built-in job after it succeeds, and the failed job was
    # never run or requeued again (one claim, one failure)
    ok = cluster.wait_done(cluster.submit(tiny_spec(iterations=5)))
    assert ok.status == "succeeded", (ok.error, cluster.tails())
    assert worker.alive() and worker.starts == 1
    assert cluster.events(job_id) == [("queued", ""), ("running", ""), ("failed", "")]
    assert cluster.job(job_id).attempts == 1
