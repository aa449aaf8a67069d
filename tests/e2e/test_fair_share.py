"""The pool's fair share with real ``celery worker`` processes (no preemption here)."""

from __future__ import annotations

import pytest

from tests.e2e.pool_stack import pool_stack
from tests.factories import bearer, team_with_key, tiny_spec


@pytest.fixture(scope="module")
def stack(fresh_database, redis_url, tmp_path_factory):
    with pool_stack(fresh_database, redis_url, tmp_path_factory.mktemp("fair-share"),
                    BILEVEL_PREEMPTION="false") as s:  # fmt: skip
        yield s


def test_a_late_team_starts_when_the_first_job_of_the_busy_team_ends(stack):
    """Alpha queues ten jobs, then beta one: the first worker to free up takes beta's."""
    client = stack.client
    alpha = bearer(team_with_key(stack.sessions, "alpha")[1])
    beta = bearer(team_with_key(stack.sessions, "beta")[1])
    spec = tiny_spec(iterations=800, steps=100)  # a few seconds each
    a_ids = [client.post("/v1/jobs", json=spec, headers=alpha).json()["id"] for _ in range(10)]
    b_id = client.post("/v1/jobs", json=spec, headers=beta).json()["id"]
    stack.wait_all(a_ids, alpha)
    stack.wait_all([b_id], beta)
    rows = stack.rows([*a_ids, b_id])
    first_end = min(rows[i].finished_at for i in a_ids)
    beta_start = rows[b_id].started_at
    # beta did not wait behind alpha's backlog: it started as the first alpha job ended
    # (the freed worker's next claim; a second covers the message's hop on a busy machine)
    first = min((rows[i] for i in a_ids), key=lambda j: j.finished_at)
    print(
        f"beta waited {(beta_start - rows[b_id].created_at).total_seconds():.2f} s, started "
        f"{(beta_start - first_end).total_seconds():+.3f} s after the first alpha job ended "
        f"(which ran {(first.finished_at - first.started_at).total_seconds():.2f} s)"
    )
    assert (beta_start - first_end).total_seconds() < 1.0, (beta_start, first_end)
    # and no alpha job was claimed between the first end and beta's start
    claims = [e for e in stack.events(a_ids) if e.to_status == "running"]
    assert not [e for e in claims if first_end < e.at < beta_start], (first_end, beta_start)
    assert all(rows[i].attempts == 1 for i in [*a_ids, b_id])


def test_a_team_limit_set_by_the_operator_holds_and_others_still_run(stack):
    """The operator limits "busy" to one running job: its jobs run one after the other while
    another team's job runs beside them; a job left queued at the limit is sent on."""
    client = stack.client
    _, operator_key = team_with_key(stack.sessions, "ops", scope="operator")
    busy = bearer(team_with_key(stack.sessions, "busy")[1])
    other = bearer(team_with_key(stack.sessions, "other")[1])
    r = client.patch("/v1/teams/busy", json={"max_running_cpu": 1}, headers=bearer(operator_key))
    assert r.status_code == 200 and r.json()["max_running_cpu"] == 1
    spec = tiny_spec(iterations=60, steps=10)
    ids = [client.post("/v1/jobs", json=spec, headers=busy).json()["id"] for _ in range(3)]
    other_id = client.post("/v1/jobs", json=spec, headers=other).json()["id"]
    stack.wait_all(ids, busy, timeout=120)
    stack.wait_all([other_id], other, timeout=120)
    rows = stack.rows([*ids, other_id])
    spans = sorted((rows[i].started_at, rows[i].finished_at) for i in ids)
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end, spans  # one at a time
    assert rows[other_id].started_at < spans[-1][0]  # the other team was not held back
