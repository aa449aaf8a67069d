"""A submit retried with its ``Idempotency-Key`` after the API process died creates one job.

The key lives in PostgreSQL with the job (a unique index per team), not in the API's
memory, so neither a crash (SIGKILL) of the API nor concurrent retries make a second job.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
from sqlalchemy import func, select

from jobs.store.models import Job
from tests.factories import bearer, team_with_key, tiny_spec
from tests.faults.services import Api, record


def test_a_submit_retried_after_the_api_restarted_creates_one_job(cluster_factory, tmp_path):
    cluster = cluster_factory()
    api = Api(cluster.env, tmp_path).start(timeout=60)
    auth = bearer(team_with_key(cluster.sessions)[1])
    headers = {**auth, "Idempotency-Key": "submit-once-42"}
    spec = tiny_spec(iterations=5)
    try:
        first = httpx.post(f"{api.url}/v1/jobs", json=spec, headers=headers, timeout=10)
        assert first.status_code == 201, first.text
        api.kill()  # the client saw no answer, say: it retries against a new process
        api.start(timeout=60)
        with ThreadPoolExecutor(4) as pool:
            retries = list(
                pool.map(
                    lambda _: httpx.post(
                        f"{api.url}/v1/jobs", json=spec, headers=headers, timeout=10
                    ),
                    range(4),
                )
            )
        other = {**headers, "Idempotency-Key": "another-key"}
        second = httpx.post(f"{api.url}/v1/jobs", json=spec, headers=other, timeout=10)
    finally:
        api.stop()
    assert [r.status_code for r in retries] == [201] * 4, [r.text for r in retries]
    assert {r.json()["id"] for r in retries} == {first.json()["id"]}
    assert all(r.headers.get("idempotent-replayed") == "true" for r in retries)
    assert second.status_code == 201 and second.json()["id"] != first.json()["id"]
    with cluster.sessions() as s:
        n = s.scalar(select(func.count()).where(Job.idempotency_key == "submit-once-42"))
    assert n == 1
    record(
        "idempotent_submit",
        api_restarts_survived=1,
        retries_after_restart=len(retries),
        jobs_created_for_key=n,
        duplicate_jobs=n - 1,
    )
