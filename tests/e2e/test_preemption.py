"""Preemption with real ``celery worker`` processes: a starved team gets a worker within
about one checkpoint interval, and the preempted job resumes exactly."""

from __future__ import annotations

import pytest

from tests.e2e.pool_stack import pool_stack
from tests.factories import bearer, team_with_key, tiny_spec

CHECKPOINT_S = 1.0


@pytest.fixture(scope="module")
def stack(fresh_database, redis_url, tmp_path_factory):
    with pool_stack(
        fresh_database, redis_url, tmp_path_factory.mktemp("preemption"),
        BILEVEL_PREEMPTION="true", BILEVEL_PREEMPT_MIN_RUN_S="0.5",
        BILEVEL_CHECKPOINT_EVERY_S=CHECKPOINT_S,
        # the preemption request travels: the reaper's pass, then the job's heartbeat
        BILEVEL_REAP_EVERY_S="0.5", BILEVEL_LEASE_S="1.5",
    ) as s:  # fmt: skip
        yield s


def _trace(client, job_id, auth):
    t = client.get(f"/v1/jobs/{job_id}/trace", headers=auth).json()
    return {k: v for k, v in t.items() if k not in ("time_s", "version", "job_id")}


def test_a_starved_team_preempts_the_busy_team_and_the_preempted_job_resumes_exactly(stack):
    client = stack.client
    alpha = bearer(team_with_key(stack.sessions, "alpha")[1])
    beta = bearer(team_with_key(stack.sessions, "beta")[1])
    spec = tiny_spec(iterations=1500, steps=100)  # several checkpoint intervals each
    a_ids = [client.post("/v1/jobs", json=spec, headers=alpha).json()["id"] for _ in range(10)]
    b_id = client.post("/v1/jobs", json=spec, headers=beta).json()["id"]
    stack.wait_all([b_id], beta)
    stack.wait_all(a_ids, alpha)
    rows = stack.rows([*a_ids, b_id])
    beta_wait = (rows[b_id].started_at - rows[b_id].created_at).total_seconds()
    first_end = min(rows[i].finished_at for i in a_ids)
    print(
        f"beta waited {beta_wait:.2f} s (checkpoint every {CHECKPOINT_S} s); the first alpha "
        f"job ended {(first_end - rows[b_id].created_at).total_seconds():.2f} s after beta's "
        "submit"
    )
    # it did not wait for an alpha job to end: one was asked to stop at its next checkpoint
    assert rows[b_id].started_at < first_end
    assert beta_wait < 3 * CHECKPOINT_S + 1.5, stack.logs()
    preempted = {str(e.job_id) for e in stack.events(a_ids)
                 if (e.detail or {}).get("reason") == "preempted"}  # fmt: skip
    assert len(preempted) == 1, preempted  # no back and forth: once, then 1:1
    # not counted as a failed attempt: as many attempts left as an uninterrupted job
    plain = next(i for i in a_ids if i not in preempted)
    victim = next(iter(preempted))
    left = {i: rows[i].max_attempts - rows[i].attempts for i in (plain, victim)}
    assert left[victim] == left[plain] == 2 and rows[victim].attempts == 2
    # resumed exactly: the same trace, bit for bit, as an uninterrupted run of the same spec
    assert _trace(client, victim, alpha) == _trace(client, plain, alpha)
    events = [e for e in stack.events([victim])]
    assert [(e.from_status, e.to_status) for e in events] == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "queued"),
        ("queued", "running"),
        ("running", "succeeded"),
    ]
