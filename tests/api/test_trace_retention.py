"""GET /v1/jobs/{id}/trace on a job whose points were compacted past the retention."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from jobs.status import JobStatus
from jobs.store import repo
from jobs.store.models import TRACE_BLOCK, Job
from tests.factories import tiny_spec

N = 4 * TRACE_BLOCK


def test_a_compacted_trace_answers_at_block_resolution_and_says_so(client, auth, pg_sessions):
    job_id = client.post("/v1/jobs", json=tiny_spec(), headers=auth).json()["id"]
    jid = uuid.UUID(job_id)
    finished = datetime(1980, 1, 1, tzinfo=UTC)  # due for nobody else's retention
    with pg_sessions.begin() as s:
        # loss 1/i and a spike at 150: each block's extremes are its ends (and the spike)
        repo.write_trace(s, jid, [{"iteration": i, "outer_loss": 9.0 if i == 150 else 1.0 / i}
                                  for i in range(1, N + 1)])  # fmt: skip
        done = {"status": JobStatus.SUCCEEDED, "finished_at": finished, "iteration": N}
        s.execute(update(Job).where(Job.id == jid).values(**done))
    url = f"/v1/jobs/{job_id}/trace?fields=outer_loss"
    full = client.get(url, headers=auth)
    assert full.headers["x-trace-resolution"] == "full" and len(full.json()["iteration"]) == N
    repo.compact_due(pg_sessions, timedelta(days=1), now=finished + timedelta(days=2))
    r = client.get(url, headers=auth)
    assert r.status_code == 200 and r.headers["x-trace-resolution"] == "block"
    assert r.headers["x-trace-points"] == str(N) and r.headers["etag"] != full.headers["etag"]
    ends = {b * TRACE_BLOCK + k for b in range(N // TRACE_BLOCK) for k in (1, TRACE_BLOCK)}
    body = r.json()
    assert body["iteration"] == sorted(ends - {129} | {150})  # the spike is block 2's maximum
    at = dict(zip(full.json()["iteration"], full.json()["outer_loss"]))
    assert body["outer_loss"] == [at[i] for i in body["iteration"]]
    assert client.get(url, headers={**auth, "If-None-Match": r.headers["etag"]}).status_code == 304
    # polling after an iteration, and a budget smaller than the rollup
    tail = client.get(f"{url}&after={N - TRACE_BLOCK}", headers=auth)
    assert tail.json()["iteration"] == [N - TRACE_BLOCK + 1, N]
    assert tail.headers["x-trace-points"] == str(TRACE_BLOCK)
    small = client.get(f"{url}&max_points=4", headers=auth).json()
    assert len(small["iteration"]) <= 4 and 150 in small["iteration"]
