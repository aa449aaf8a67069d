"""``/v1/pool``, ``PATCH /v1/teams/{name}`` and ``/metrics`` on a store of the test's own, and
who may use them: the pool operator's key, not a team's admin key."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event

from api import ApiSettings, create_app
from jobs.store import repo
from tests.api.conftest import RecordingDispatcher
from tests.factories import bearer, team_with_key, tiny_spec, wait_until


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
    _, operator_key = team_with_key(sessions, "ops", scope="operator")
    r = client.get("/v1/pool", headers=beta)
    assert r.status_code == 200, r.text
    pool = r.json()
    # a team's key sees its own row and the pool's totals; the operator's sees every team
    assert [t["name"] for t in pool["teams"]] == ["beta"]
    assert pool["totals"]["cpu"] == {"running": 1, "queued": 3, "teams": 2}
    every = client.get("/v1/pool", headers=bearer(operator_key)).json()
    assert every["totals"] == pool["totals"]
    teams = {t["name"]: t for t in every["teams"]}
    assert teams["alpha"]["kinds"]["cpu"] == {"running": 1, "queued": 2, "limit": 20,
                                              "fair_share": 0.5, "share": 1.0}  # fmt: skip
    assert teams["beta"]["kinds"]["cpu"]["queued"] == 1
    # beta's job goes before alpha's older ones: alpha holds the only worker
    assert [(q["id"], q["position"]) for q in pool["queued"]] == [(b_ids[0], 1)]
    assert pool["queued"][0]["estimated_start_s"] is not None
    assert [(w["name"], w["busy"], w["job"]) for w in pool["workers"]] == [("w1", True, None)]
    assert pool["oldest_wait_s"]["cpu"] >= 0 and pool["oldest_wait_s"]["gpu"] is None
    mine = client.get("/v1/pool", headers=alpha).json()
    assert [t["name"] for t in mine["teams"]] == ["alpha"]
    assert mine["teams"][0] == teams["alpha"]
    assert [q["position"] for q in mine["queued"]] == [2, 3]
    assert mine["workers"][0]["job"] == str(claim.job_id) and str(claim.job_id) in a_ids


def test_a_teams_polls_are_answered_from_the_reading_with_no_statement(own_pg_sessions):
    # the largest body of the API, polled by every team: under load each query and each
    # model built on the request was a chance to wait (the scale benchmark's p99)
    settings = ApiSettings(database_url="postgresql://unused/x", broker_url=None,
                           pool_cache_s=3600.0)  # fmt: skip
    sessions = own_pg_sessions
    _, alpha_key = team_with_key(sessions, "alpha")
    _, beta_key = team_with_key(sessions, "beta")
    alpha, beta = bearer(alpha_key), bearer(beta_key)
    app = create_app(settings, dispatcher=RecordingDispatcher(), sessions=sessions)
    seen: list[str] = []

    def record(conn, cursor, statement, *args):
        seen.append(statement)

    def get(auth):
        seen.clear()
        event.listen(sessions.kw["bind"], "before_cursor_execute", record)
        try:
            r = c.get("/v1/pool", headers=auth)
        finally:
            event.remove(sessions.kw["bind"], "before_cursor_execute", record)
        assert r.status_code == 200, r.text
        return r

    with TestClient(app) as c:
        a_ids = _submit(c, alpha, 2)
        b_ids = _submit(c, beta, 1)
        first = get(alpha)  # the process's first: reads the store
        assert [q["id"] for q in first.json()["queued"]] == a_ids
        again = get(alpha)
        assert seen == [] and again.content == first.content
        # another viewer's first answer in this reading is its own, read once, then kept
        assert [q["id"] for q in get(beta).json()["queued"]] == b_ids
        assert get(beta).json()["teams"][0]["name"] == "beta" and seen == []
        # the next reading reads the queued jobs of the teams that asked before theirs
        a_ids += _submit(c, alpha, 1)
        memo = app.state.pool_memo
        with sessions() as s:
            repo.refresh_pool_state(s, repo.Policy.of(settings), memo)
        renewed = get(alpha)
        assert seen == [] and [q["id"] for q in renewed.json()["queued"]] == a_ids


def test_the_operator_sets_a_teams_weight_and_limits_and_no_team_key_may(own):
    client, sessions = own
    _, team_key = team_with_key(sessions, "alpha")
    _, admin_key = team_with_key(sessions, "alpha", scope="admin")
    _, operator_key = team_with_key(sessions, "ops", scope="operator")
    body = {"weight": 3.0, "max_running_gpu": 2}
    for key in (team_key, admin_key):  # not even its own team's share
        r = client.patch("/v1/teams/alpha", json=body, headers=bearer(key))
        assert r.status_code == 403 and "operator" in r.json()["detail"]
    op = bearer(operator_key)
    r = client.patch("/v1/teams/alpha", json=body, headers=op)
    assert r.status_code == 200, r.text
    assert r.json() == {"name": "alpha", "weight": 3.0, "max_running_cpu": 20,
                        "max_running_gpu": 2, "custom": ["weight", "max_running_gpu"]}  # fmt: skip
    r = client.patch("/v1/teams/alpha", json={"weight": None}, headers=op)
    assert r.json()["weight"] == 1.0 and r.json()["custom"] == ["max_running_gpu"]
    bad = client.patch("/v1/teams/alpha", json={"weight": 0}, headers=op)
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"
    assert bad.json()["errors"][0]["loc"][-1] == "weight"
    missing = client.patch("/v1/teams/nobody", json=body, headers=op)
    assert missing.status_code == 404 and "nobody" in missing.json()["detail"]
    # a team admin is refused for a missing team too: a 403, not a 404 that tells it apart
    assert client.patch("/v1/teams/nobody", json=body, headers=bearer(admin_key)).status_code == 403


def test_a_team_admins_patch_of_another_team_is_403_and_audited_for_both(own):
    client, sessions = own
    _, victim = team_with_key(sessions, "victim", scope="admin")
    _, admin = team_with_key(sessions, "greedy", scope="admin")
    r = client.patch("/v1/teams/victim", json={"max_running_cpu": 1},
                     headers={**bearer(admin), "User-Agent": "greedy/1"})  # fmt: skip
    assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
    assert f"key {admin.split('_')[1]} has scope 'admin'" in r.json()["detail"]
    with sessions() as s:  # nothing changed
        assert repo.team_by_name(s, "victim").max_running_cpu is None

    def refusals(key):
        data = client.get("/v1/audit", headers=bearer(key)).json()["data"]
        return [e for e in data if e["action"] == "access.denied"]

    (own_view,) = refusals(admin)
    assert (own_view["target_type"], own_view["target_id"]) == ("team", "victim")
    assert own_view["key_prefix"] == admin.split("_")[1] and own_view["user_agent"] == "greedy/1"
    (victims_view,) = refusals(victim)  # the team it aimed at sees the attempt
    assert victims_view["id"] == own_view["id"] and victims_view["team"] == "greedy"
    assert not victims_view["own"]


def test_every_refusal_of_a_keys_scope_is_audited(own):
    client, sessions = own
    _, team_key = team_with_key(sessions, "alpha")
    _, admin_key = team_with_key(sessions, "alpha", scope="admin")
    assert client.get("/v1/keys", headers=bearer(team_key)).status_code == 403
    assert client.delete("/v1/keys/abcd", headers=bearer(team_key)).status_code == 403
    # an admin key may not mint an operator key: only the server makes one
    r = client.post("/v1/keys", json={"scope": "operator"}, headers=bearer(admin_key))
    assert r.status_code == 403 and "bilevel keys create --operator" in r.json()["detail"]
    assert client.get("/metrics", headers=bearer(admin_key)).status_code == 403
    data = client.get("/v1/audit", headers=bearer(admin_key)).json()["data"]
    denied = [(e["target_type"], e["target_id"], e["key_prefix"]) for e in data
              if e["action"] == "access.denied"]  # fmt: skip
    assert denied == [  # newest first
        ("endpoint", "GET /metrics", admin_key.split("_")[1]),
        ("endpoint", "POST /v1/keys", admin_key.split("_")[1]),
        # the route, not the URL: the path's parameters are not recorded as a target
        ("endpoint", "DELETE /v1/keys/{prefix}", team_key.split("_")[1]),
        ("endpoint", "GET /v1/keys", team_key.split("_")[1]),
    ]
    with sessions() as s:
        assert [k.scope for k, _ in repo.list_api_keys(s, "alpha")] == ["team", "admin"]


def test_metrics_parse_as_prometheus_text_and_count_the_pool(own):
    client, sessions = own
    _, key = team_with_key(sessions, "alpha")
    _, operator_key = team_with_key(sessions, "ops", scope="operator")
    _submit(client, bearer(key), 2)
    with sessions.begin() as s:
        claim = repo.claim_next(s, "cpu", "w1", 30.0, repo.Policy())
        repo.beat_worker(s, "w1", "cpu")
    with sessions.begin() as s:
        repo.finish_job(s, claim, "succeeded")
    assert client.get("/metrics").status_code == 401  # names every team: not without a key
    r = client.get("/metrics", headers=bearer(operator_key))
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


TOKEN = "metrics-token-" + "0123456789abcdef" * 2


def test_metrics_may_take_a_token_of_their_own_instead_of_a_key(own_pg_sessions):
    settings = ApiSettings(database_url="postgresql://unused/x", broker_url=None,
                           metrics_access="token", metrics_token=TOKEN)  # fmt: skip
    _, operator_key = team_with_key(own_pg_sessions, "ops", scope="operator")
    app = create_app(settings, dispatcher=RecordingDispatcher(), sessions=own_pg_sessions)
    with TestClient(app) as c:
        assert c.get("/metrics", headers=bearer(TOKEN)).status_code == 200
        for wrong in ({}, bearer(TOKEN + "x"), bearer(operator_key)):
            r = c.get("/metrics", headers=wrong)
            assert r.status_code == 401 and "BILEVEL_METRICS_TOKEN" in r.json()["detail"]
        # the token opens /metrics and nothing else
        assert c.get("/v1/pool", headers=bearer(TOKEN)).status_code == 401
    with pytest.raises(ValueError, match="BILEVEL_METRICS_TOKEN of at least 32 characters, got 0"):
        ApiSettings(database_url="postgresql://unused/x", metrics_access="token")


@pytest.mark.parametrize(
    ("address", "status"),
    [
        ("127.0.0.1", 200),
        ("10.1.2.3", 200),
        ("fd00::5", 200),
        ("203.0.113.9", 403),
        ("8.8.8.8", 403),
        ("::ffff:8.8.8.8", 403),
    ],
)
def test_metrics_may_be_open_to_private_addresses_only(own_pg_sessions, address, status):
    settings = ApiSettings(database_url="postgresql://unused/x", broker_url=None,
                           metrics_access="private")  # fmt: skip
    app = create_app(settings, dispatcher=RecordingDispatcher(), sessions=own_pg_sessions)
    with TestClient(app, client=(address, 5000)) as c:
        r = c.get("/metrics")
        assert r.status_code == status
        if status == 403:
            assert address in r.json()["detail"] and "private" in r.json()["detail"]


def test_a_stale_metrics_reading_is_answered_while_one_thread_reads_the_store_again(
    own_pg_sessions,
):
    settings = ApiSettings(database_url="postgresql://unused/x", broker_url=None,
                           metrics_cache_s=0.0)  # fmt: skip
    _, key = team_with_key(own_pg_sessions, "alpha")
    _, operator_key = team_with_key(own_pg_sessions, "ops", scope="operator")
    app = create_app(settings, dispatcher=RecordingDispatcher(), sessions=own_pg_sessions)

    def queued(c) -> float:
        body = c.get("/metrics", headers=bearer(operator_key)).text
        jobs = {f.name: f for f in text_string_to_metric_families(body)}["bilevel_jobs"]
        return sum(x.value for x in jobs.samples if x.labels["status"] == "queued")

    with TestClient(app) as c:
        assert queued(c) == 0  # the first scrape reads the store itself
        _submit(c, bearer(key), 2)
        # always stale (cache 0 s): each scrape starts a renewal and may get the last
        # reading; one of the next ones has the new count
        wait_until(lambda: queued(c) == 2, 10.0, "a renewed reading with both jobs")
