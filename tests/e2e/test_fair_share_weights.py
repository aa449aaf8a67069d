"""Weights with real ``celery worker`` processes: at 3:1, four workers split 3:1."""

from __future__ import annotations

import time

import pytest

from jobs.store import repo
from tests.e2e.pool_stack import pool_stack
from tests.factories import bearer, team_with_key, tiny_spec


@pytest.fixture(scope="module")
def stack(fresh_database, redis_url, tmp_path_factory):
    with pool_stack(fresh_database, redis_url, tmp_path_factory.mktemp("weights"), workers=4,
                    BILEVEL_PREEMPTION="false") as s:  # fmt: skip
        yield s


def test_weights_3_to_1_split_four_busy_workers_3_to_1_while_both_teams_wait(stack):
    client, sessions = stack.client, stack.sessions
    alpha = bearer(team_with_key(sessions, "alpha")[1])
    beta = bearer(team_with_key(sessions, "beta")[1])
    _, operator = team_with_key(sessions, "ops", scope="operator")
    r = client.patch("/v1/teams/alpha", json={"weight": 3}, headers=bearer(operator))
    assert r.status_code == 200, r.text
    spec = tiny_spec(iterations=400, steps=100)  # about a second or two each here
    # alpha's backlog first: its jobs take every worker until beta queues
    ids = [client.post("/v1/jobs", json=spec, headers=alpha).json()["id"] for _ in range(18)]
    ids += [client.post("/v1/jobs", json=spec, headers=beta).json()["id"] for _ in range(6)]
    policy = repo.Policy()
    names: dict[str, str] = {}
    samples: list[tuple[float, int, int]] = []  # (seconds, alpha running, beta running)
    last = time.monotonic()
    deadline = last + 240
    started = False
    while time.monotonic() < deadline:
        with sessions() as s:
            loads = repo.team_loads(s, "cpu", policy)
            queued = {c.team for c in repo.queued_candidates(s, "cpu")}
            if not names:
                names = {str(repo.team_by_name(s, n).id): n for n in ("alpha", "beta")}
        running = {names.get(t): load.running for t, load in loads.items()}
        now = time.monotonic()
        both_wait = {names.get(t) for t in queued} >= {"alpha", "beta"}
        # the window: from beta's first start (the first claim after both teams queued),
        # while both teams still have queued jobs
        started = started or running.get("beta", 0) > 0
        if started and both_wait:
            samples.append((now - last, running.get("alpha", 0), running.get("beta", 0)))
        elif samples and not both_wait:
            break
        last = now
        time.sleep(0.1)
    span = sum(dt for dt, _, _ in samples)
    assert span > 5, (samples, stack.logs())
    mean_a = sum(dt * a for dt, a, _ in samples) / span
    mean_b = sum(dt * b for dt, _, b in samples) / span
    print(
        f"over {span:.1f} s with both teams backlogged: alpha ran {mean_a:.2f} jobs, "
        f"beta {mean_b:.2f} on average (weights 3:1, 4 workers)"
    )
    # within one job of the weighted share of four workers
    assert abs(mean_a - 3) <= 1 and abs(mean_b - 1) <= 1, samples
    # and never the other way round: beta never held more than its one worker
    assert max(b for _, _, b in samples) == 1, samples
    assert max(a for _, a, _ in samples) == 3, samples
