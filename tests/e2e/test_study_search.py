"""A search study on the distributed service: PostgreSQL, Redis, two real Celery workers.

A TPE search with a median pruner over the outer learning rate (log), ``K`` (categorical)
and the inner steps of the toy problem: the workers ask for each next member as one ends,
the study stops at its trial budget, and members that fall behind end ``pruned`` with their
trace kept up to where they stopped. Then a second study loses a worker (killed) and the API
(a new app) in the middle, and still ends with every trial once.
"""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from api import ApiSettings, create_app
from jobs.dispatch import CeleryDispatcher
from tests.e2e.workers import CeleryWorker
from tests.factories import team_with_key, tiny_spec, wait_until

pytestmark = pytest.mark.integration

N_TRIALS = 10


@pytest.fixture(scope="module")
def env(fresh_database, redis_url):
    from migrations import upgrade

    url = fresh_database()
    upgrade(url)
    return {
        "DATABASE_URL": url,
        "BROKER_URL": redis_url,
        "BILEVEL_QUEUE_PREFIX": f"test{uuid.uuid4().hex[:8]}",
        "BILEVEL_LEASE_S": "5",
        "BILEVEL_REAP_EVERY_S": "0.5",
        "BILEVEL_REQUEUE_QUEUED_AFTER_S": "5",
        "BILEVEL_FLUSH_EVERY_S": "0.05",
        "BILEVEL_TORCH_THREADS": "1",
    }


@pytest.fixture(scope="module")
def workers(env, tmp_path_factory):
    logs = tmp_path_factory.mktemp("workers")
    pool = [CeleryWorker(env, logs, name) for name in ("a", "b")]
    for w in pool:
        w.launch()
    for w in pool:
        w.wait_ready()
    try:
        yield pool
    finally:
        for w in pool:
            w.stop()


def _app(env):
    settings = ApiSettings(database_url=env["DATABASE_URL"], broker_url=env["BROKER_URL"],
                           queue_prefix=env["BILEVEL_QUEUE_PREFIX"])  # fmt: skip
    dispatcher = CeleryDispatcher(settings.broker_url, settings.queue_prefix)
    return TestClient(create_app(settings, dispatcher=dispatcher)), dispatcher


@pytest.fixture(scope="module")
def auth(env):
    from jobs.store.db import make_engine, make_session_factory

    engine = make_engine(env["DATABASE_URL"])
    try:
        return {"Authorization": f"Bearer {team_with_key(make_session_factory(engine))[1]}"}
    finally:
        engine.dispose()


def _body(name: str, seed: int) -> dict:
    base = tiny_spec(iterations=300, steps=15)
    base["diagnostics"]["every"] = 0
    search = {
        "params": {
            "outer.lr": {"type": "float", "low": 1e-4, "high": 0.3, "log": True},
            "hypergradient.K": {"type": "categorical", "choices": [1, 3, 5]},
            "inner.steps": {"type": "int", "low": 5, "high": 15, "step": 5},
        },
        "sampler": "tpe", "n_trials": N_TRIALS, "max_concurrent": 2, "seed": seed,
        "pruner": {"kind": "median", "startup_trials": 2, "warmup_steps": 5},
    }  # fmt: skip
    return {"name": name, "base": base, "search": search}


def _ended(client, auth, sid, timeout=300.0) -> dict:
    def done():
        s = client.get(f"/v1/studies/{sid}", headers=auth).json()
        return s if s["search_done"] else None

    return wait_until(done, timeout, f"search {sid} to end", poll=0.5)


def _check_trials(client, auth, study) -> None:
    members = study["members"]
    assert [m["position"] for m in members] == list(range(N_TRIALS))  # none lost, none twice
    assert len({m["job_id"] for m in members}) == N_TRIALS
    assert all(m["status"] in ("succeeded", "pruned") for m in members), members
    assert study["status"] == "succeeded"
    assert study["progress"]["members"] == N_TRIALS


def test_a_tpe_search_with_a_pruner_ends_at_its_budget_with_pruned_members(env, workers, auth):
    client, dispatcher = _app(env)
    try:
        with client:
            r = client.post("/v1/studies", json=_body("tpe", 0), headers=auth)
            assert r.status_code == 201, r.text
            study = _ended(client, auth, r.json()["id"])
            _check_trials(client, auth, study)
            pruned = [m for m in study["members"] if m["status"] == "pruned"]
            assert pruned, "no member was pruned"
            for m in pruned:
                at = m["summary"]["pruned_at"]
                assert 5 <= at < 300 and m["trial_state"] == "pruned"
                trace = client.get(f"/v1/jobs/{m['job_id']}/trace", headers=auth).json()
                assert trace["iteration"] == list(range(1, at + 1))  # the trace is kept
            done = [m for m in study["members"] if m["status"] == "succeeded"]
            best = min(done, key=lambda m: m["objectives"][0])
            assert study["best"] == [best["position"]]
    finally:
        dispatcher.close()


def test_a_worker_and_the_api_killed_mid_search_lose_and_double_no_member(env, workers, auth):
    client, dispatcher = _app(env)
    with client:
        r = client.post("/v1/studies", json=_body("restart", 1), headers=auth)
        assert r.status_code == 201, r.text
        sid = r.json()["id"]

        def running_on_a():
            s = client.get(f"/v1/studies/{sid}", headers=auth).json()
            return len(s["members"]) >= 4 and any(m["status"] == "running" for m in s["members"])

        wait_until(running_on_a, 120, "the search's fourth member", poll=0.2)
    dispatcher.close()  # the API is gone
    workers[0].kill()  # and a worker, with whatever it was running
    workers[0] = CeleryWorker(env, workers[0].log_path.parent, "a2").start()
    client, dispatcher = _app(env)  # a new API process's app
    try:
        with client:
            study = _ended(client, auth, sid)
            _check_trials(client, auth, study)
    finally:
        dispatcher.close()
