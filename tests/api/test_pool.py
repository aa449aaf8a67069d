"""``/v1/pool``, ``PATCH /v1/teams/{name}`` and ``/metrics`` on a store of the test's own."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api import ApiSettings, create_app
from jobs.store import repo
from tests.api.conftest import RecordingDispatcher
from tests.factories import bearer, team_with_key, tiny_spec


@pytest.fixture
def own(own_pg_sessions):
    settings = ApiSettings(database_url="postgresql://unused/x", broker_url=None)
    app = create_app(settings, dispatcher=RecordingDispatcher(), sessions=own_pg_sessions)
    with TestClient(app) as c:
        yield c, own_pg_sessions


def _submit(client, auth, n=1, **over):
    return [client.post("/v1/jobs", json=tiny_spec(**over), headers=auth).json()["id"]
            for _ in range(n)]  # fmt: skip


def test_the_pool_shows_each_teams_share_and_your_queued_jobs_in_fair_order(own):
    client, sessions = own
    _, alpha_key = team_with_key(sessions, "alpha")
    _, beta_key = team_with_key(sessions, "beta")
    alpha, beta = bearer(alpha_key), bearer(beta_key)
    a_ids = _submit(client, alpha, 3)
    with sessions.begin() as s:  # alpha runs one already, on a live worker
        claim = repo.claim_next(s, "cpu", "w1", 30.0, repo.Policy())
        repo.beat_worker(s, "w1", "cpu")
    b_ids = _submit(client, beta, 1)
    r = client.get("/v1/pool", headers=beta)
    assert r.status_code == 200, r.text
    pool = r.json()
    teams = {t["name"]: t for t in pool["teams"]}
    assert teams["alpha"]["kinds"]["cpu"] == {"running": 1, "queued": 2, "limit": 20,
                                              "fair_share": 0.5, "share": 1.0}  # fmt: skip
    assert teams["beta"]["kinds"]["cpu"]["queued"] == 1
    # beta's job goes before alpha's older ones: alpha holds the only worker
    assert [(q["id"], q["position"]) for q in pool["queued"]] == [(b_ids[0], 1)]
    assert pool["queued"][0]["estimated_start_s"] is not None
    assert [(w["name"], w["busy"], w["job"]) for w in pool["workers"]] == [("w1", True, None)]
    assert pool["oldest_wait_s"]["cpu"] >= 0 and pool["oldest_wait_s"]["gpu"] is None
    mine = client.get("/v1/pool", headers=alpha).json()
    assert [q["position"] for q in mine["queued"]] == [2, 3]
    assert mine["workers"][0]["job"] == str(claim.job_id) and str(claim.job_id) in a_ids


def test_an_admin_sets_a_teams_weight_and_limits_and_a_team_key_may_not(own):
    client, sessions = own
    _, team_key = team_with_key(sessions, "alpha")
    _, admin_key = team_with_key(sessions, "ops", scope="admin")
    body = {"weight": 3.0, "max_running_gpu": 2}
    assert client.patch("/v1/teams/alpha", json=body, headers=bearer(team_key)).status_code == 403
    r = client.patch("/v1/teams/alpha", json=body, headers=bearer(admin_key))
    assert r.status_code == 200, r.text
    assert r.json() == {"name": "alpha", "weight": 3.0, "max_running_cpu": 20,
                        "max_running_gpu": 2, "custom": ["weight", "max_running_gpu"]}  # fmt: skip
    r = client.patch("/v1/teams/alpha", json={"weight": None}, headers=bearer(admin_key))
    assert r.json()["weight"] == 1.0 and r.json()["custom"] == ["max_running_gpu"]
    bad = client.patch("/v1/teams/alpha", json={"weight": 0}, headers=bearer(admin_key))
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"
    assert bad.json()["errors"][0]["loc"][-1] == "weight"
    missing = client.patch("/v1/teams/nobody", json=body, headers=bearer(admin_key))
    assert missing.status_code == 404 and "nobody" in missing.json()["detail"]


def test_metrics_parse_as_prometheus_text_and_count_the_pool(own):
    client, sessions = own
    _, key = team_with_key(sessions, "alpha")
    _submit(client, bearer(key), 2)
    with sessions.begin() as s:
        claim = repo.claim_next(s, "cpu", "w1", 30.0, repo.Policy())
        repo.beat_worker(s, "w1", "cpu")
    with sessions.begin() as s:
        repo.finish_job(s, claim, "succeeded")
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    jobs = {(x.labels["team"], x.labels["status"]): x.value
            for x in families["bilevel_jobs"].samples}  # fmt: skip
    assert jobs[("alpha", "queued")] == 1 and jobs[("alpha", "succeeded")] == 1
    assert jobs[("alpha", "running")] == 0
    wait = {x.name: x.value for x in families["bilevel_queue_wait_seconds"].samples
            if x.labels.get("le") in (None, "+Inf")}  # fmt: skip
    assert wait["bilevel_queue_wait_seconds_count"] == 1
    assert families["bilevel_workers_alive"].samples[0].value == 1
    assert families["bilevel_preemptions"].samples[0].value == 0
    assert "bilevel_run_seconds" in families and "bilevel_trace_points_written" in families


def test_metrics_can_be_turned_off(own_pg_sessions):
    settings = ApiSettings(database_url="postgresql://unused/x", broker_url=None, metrics=False)
    app = create_app(settings, dispatcher=RecordingDispatcher(), sessions=own_pg_sessions)
    with TestClient(app) as c:
        assert c.get("/metrics").status_code == 404
