"""PostgreSQL restarts mid-run: the API says 503 meanwhile, and the job loses nothing.

The outage is longer than the lease on purpose: no heartbeat can renew it meanwhile, so
when the store comes back every running job looks lost. The reaper must give the
heartbeats a lease's time to catch up (``worker.tasks._reaper_loop``) instead of taking the
job from a worker that is still computing it, which would cost an attempt per outage.
"""

from __future__ import annotations

import time

import numpy as np
from fastapi.testclient import TestClient

from api import ApiSettings, create_app
from tests.factories import bearer, team_with_key, tiny_spec
from tests.faults.reference import reference, trace_gaps
from tests.faults.services import record

ITERATIONS = 300
DOWN_S = 3.0  # > BILEVEL_LEASE_S


def test_a_postgres_restart_gives_503_meanwhile_and_loses_no_trace_point(cluster_factory, fault_pg):
    cluster = cluster_factory()
    cluster.workers_up("a")
    settings = ApiSettings(
        database_url=cluster.env["DATABASE_URL"],
        broker_url=cluster.redis.url,
        queue_prefix=cluster.env["BILEVEL_QUEUE_PREFIX"],
    )
    auth = bearer(team_with_key(cluster.sessions)[1])
    spec = tiny_spec(iterations=ITERATIONS, steps=1000)
    with TestClient(create_app(settings, dispatcher=cluster.dispatcher)) as client:
        r = client.post("/v1/jobs", json=spec, headers=auth)
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]
        cluster.wait(job_id, lambda j: j.iteration >= 40, what="iteration 40")

        fault_pg.stop()
        answers, t0 = [], time.monotonic()
        while time.monotonic() - t0 < DOWN_S:
            r = client.get(f"/v1/jobs/{job_id}", headers=auth)
            answers.append(r)
            time.sleep(0.1)
        ready = client.get("/readyz")
        fault_pg.start()
        t_up = time.monotonic()
        while (r := client.get(f"/v1/jobs/{job_id}", headers=auth)).status_code != 200:
            assert time.monotonic() - t_up < 15, (r.status_code, r.text)
            time.sleep(0.05)
        recovered_s = time.monotonic() - t_up
        iteration_at_return = r.json()["progress"]["iteration"]

        assert {a.status_code for a in answers} == {503}, [a.text for a in answers[:3]]
        for a in answers:
            assert a.headers["content-type"] == "application/problem+json"
            assert int(a.headers["retry-after"]) > 0, a.headers
            assert a.json()["status"] == 503 and a.json()["type"].endswith("store-unavailable")
        assert ready.status_code == 503, ready.text
        assert ready.headers["content-type"] == "application/problem+json"
        job = cluster.wait_done(job_id, timeout=60)
        trace = client.get(f"/v1/jobs/{job_id}/trace", headers=auth).json()

    assert job.status == "succeeded", (job.error, cluster.tails())
    # the worker carried its attempt through the outage: no lease was taken from it
    assert job.attempts == 1, cluster.tails()
    assert iteration_at_return < ITERATIONS  # the outage happened mid-run
    missing, doubled = trace_gaps(trace["iteration"], ITERATIONS)
    assert trace["iteration"] == list(range(1, ITERATIONS + 1))
    losses, hparams = reference(spec)
    assert trace["outer_loss"] == losses
    np.testing.assert_array_equal(cluster.hparams(job_id), hparams)
    retried = sum(w.tail(10**6).count("store unavailable") for w in cluster.workers.values())
    record(
        "store_restart",
        postgres_restarts_survived=1,
        down_s=DOWN_S,
        api_503_answers=len(answers),
        api_recovered_after_s=round(recovered_s, 2),
        worker_write_retries_logged=retried,
        attempts=job.attempts,
        jobs_lost=0,
        trace_points_lost=missing,
        trace_points_doubled=doubled,
    )
