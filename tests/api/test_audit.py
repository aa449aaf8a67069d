"""The audit trail (GET /v1/audit), the failed-authentication limit per address, and the
team's last admin key."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from api import ApiSettings, create_app
from api.authfailures import AuthFailures
from jobs.store import repo
from tests.api.test_security import _problem
from tests.dataset_files import digits_arrays, npz_bytes
from tests.factories import bearer, key_operator, team_with_key, tiny_spec


def _events(client, key, *, operator: bool = False, **params) -> list[dict]:
    """The key's team's events; without the operator's (``team_with_key`` creating the key
    on the store is audited too) unless ``operator``."""
    r = client.get("/v1/audit", headers=bearer(key), params=params)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    return data if operator else [e for e in data if e["user_agent"] != repo.OPERATOR_AGENT]


@pytest.fixture
def hooks_client(make_client):
    return make_client(webhook_allow=["127.0.0.0/8"])


def test_each_admin_action_is_in_its_teams_audit_and_no_other(hooks_client, pg_sessions):
    c = hooks_client
    # the operator's key: an admin of its own team that may also set the team's weight
    team_id, key = team_with_key(pg_sessions, scope="operator")
    _, other = team_with_key(pg_sessions, scope="admin")
    h = {**bearer(key), "User-Agent": "audit-test/1"}

    new = c.post("/v1/keys", json={"name": "ci"}, headers=h).json()
    assert c.delete(f"/v1/keys/{new['prefix']}", headers=h).status_code == 200
    name = next(k for k in _team_names(pg_sessions) if k[0] == team_id)[1]
    assert c.patch(f"/v1/teams/{name}", json={"weight": 3}, headers=h).status_code == 200
    hook = c.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/h"}, headers=h).json()
    assert c.delete(f"/v1/webhooks/{hook['id']}", headers=h).status_code == 200
    data = npz_bytes(digits_arrays(n_train=100, n_val=50, seed=random.randrange(1 << 30)))
    ds = c.post("/v1/datasets", params={"name": "d"}, content=data,
                headers={**h, "Content-Type": "application/octet-stream"}).json()  # fmt: skip
    assert c.delete(f"/v1/datasets/{ds['id']}", headers=h).status_code == 200

    events = _events(c, key)
    assert [e["action"] for e in events] == [  # newest first
        "dataset.delete", "webhook.delete", "webhook.create", "team.update", "key.revoke",
        "key.create",
    ]  # fmt: skip
    by = {e["action"]: e for e in events}
    assert by["key.create"]["target_id"] == new["prefix"]
    assert by["key.create"]["after"] == {"name": "ci", "scope": "team"}
    assert by["key.revoke"]["target_id"] == new["prefix"]
    assert by["team.update"]["before"] == {"weight": None}
    assert by["team.update"]["after"] == {"weight": 3.0}
    assert by["webhook.create"]["target_id"] == hook["id"]
    assert by["dataset.delete"]["target_id"] == ds["id"]
    prefix = key.split("_")[1]
    for e in events:  # who, when, from where
        assert e["own"] and e["team"] == name and e["key_prefix"] == prefix
        assert e["address"] == "testclient" and e["user_agent"] == "audit-test/1"
        assert abs(datetime.fromisoformat(e["created_at"]) - datetime.now(UTC)) < timedelta(hours=1)
    assert _events(c, other) == []  # never another team's
    assert [e["action"] for e in _events(c, key, action="key.create")] == ["key.create"]
    # the key the test made on the store (as `bilevel keys create` does) is the oldest event:
    # the operator's, with no key and no address
    made = _events(c, key, operator=True)[-1]
    assert made["action"] == "key.create" and made["target_id"] == prefix
    assert made["after"] == {"name": "", "scope": "operator"} and made["own"]
    assert (made["key_prefix"], made["address"]) == ("", None)
    assert [e["target_id"] for e in _events(c, other, operator=True)] == [other.split("_")[1]]


def _team_names(pg_sessions) -> list[tuple[uuid.UUID, str]]:
    from sqlalchemy import select

    from jobs.store.models import Team

    with pg_sessions() as s:
        return [(t.id, t.name) for t in s.scalars(select(Team))]


def test_a_refused_cross_team_read_is_audited_for_both_teams_and_no_third(client, pg_sessions):
    _, owner = team_with_key(pg_sessions, scope="admin")
    _, prober = team_with_key(pg_sessions, scope="admin")
    _, third = team_with_key(pg_sessions, scope="admin")
    job_id = client.post("/v1/jobs", json=tiny_spec(), headers=bearer(owner)).json()["id"]
    _problem(client.get(f"/v1/jobs/{job_id}", headers=bearer(prober)), 404, "not-found")
    missing = uuid.uuid4()  # a missing job is nobody's: nothing to audit
    _problem(client.get(f"/v1/jobs/{missing}", headers=bearer(prober)), 404, "not-found")

    (seen,) = _events(client, owner)
    assert seen["action"] == "access.denied" and seen["target_type"] == "job"
    assert seen["target_id"] == job_id and not seen["own"]
    # the owner learns which team probed, not that team's key or address
    assert seen["team"].startswith("team-") and seen["key_prefix"] is None
    assert seen["address"] is None
    (own,) = _events(client, prober)
    assert own["id"] == seen["id"] and own["own"]
    assert own["key_prefix"] == prober.split("_")[1] and own["address"] == "testclient"
    assert _events(client, third) == []


def test_the_audit_needs_an_admin_key(client, auth):
    body = _problem(client.get("/v1/audit", headers=auth), 403, "forbidden")
    assert "admin" in body["detail"]
    _problem(client.get("/v1/audit"), 401)


def test_the_audit_pages_newest_first_and_filters_by_time(client, pg_sessions):
    _, key = team_with_key(pg_sessions, scope="admin")
    for i in range(5):
        client.post("/v1/keys", json={"name": f"k{i}"}, headers=bearer(key))
    params = {"limit": 2, "action": "key.create"}
    r = client.get("/v1/audit", headers=bearer(key), params=params).json()
    names, cursor = [e["after"]["name"] for e in r["data"]], r["next_cursor"]
    while cursor:
        r = client.get("/v1/audit", headers=bearer(key), params={**params, "cursor": cursor})
        names += [e["after"]["name"] for e in r.json()["data"]]
        cursor = r.json()["next_cursor"]
    assert names == ["k4", "k3", "k2", "k1", "k0", ""]  # "": the factory's, on the store
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert _events(client, key, since=soon) == []
    assert len(_events(client, key, until=soon)) == 5
    body = _problem(client.get("/v1/audit", headers=bearer(key), params={"since": "0.5"}), 422)
    assert [e["field"] for e in body["errors"]] == ["query.since"]


def test_any_cursor_of_the_stated_form_is_accepted(client, auth):
    # the schema states the form; an old or far-off position answers a page, not an error
    for cursor in ("0-" + "0" * 32, "9" * 19 + "-" + "f" * 32):
        r = client.get("/v1/jobs", headers=auth, params={"cursor": cursor})
        assert r.status_code == 200, r.text
    _problem(client.get("/v1/jobs", headers=auth, params={"cursor": "garbage!"}), 422)


def test_the_last_admin_key_cannot_be_revoked(client, pg_sessions):
    _, key = team_with_key(pg_sessions, scope="admin")
    prefix = key.split("_")[1]
    body = _problem(client.delete(f"/v1/keys/{prefix}", headers=bearer(key)), 409,
                    "last-admin-key")  # fmt: skip
    assert f"key {prefix}" in body["detail"] and "create another admin key" in body["detail"]
    assert client.get("/v1/keys", headers=bearer(key)).status_code == 200  # still works
    second = client.post("/v1/keys", json={"scope": "admin"}, headers=bearer(key)).json()
    assert client.delete(f"/v1/keys/{prefix}", headers=bearer(second["key"])).status_code == 200
    _problem(client.delete(f"/v1/keys/{second['prefix']}", headers=bearer(second["key"])), 409)


def test_the_last_admin_key_is_refused_by_the_store_too_and_a_refusal_is_not_audited(
    client, pg_sessions
):
    _, key = team_with_key(pg_sessions, scope="admin")
    prefix = key.split("_")[1]
    # the CLI revokes straight on the store: the same function the API calls refuses it
    with pg_sessions.begin() as s, pytest.raises(repo.LastAdminKey, match=f"key {prefix}"):
        repo.revoke_api_key(s, prefix, actor=key_operator(s, prefix))
    with pg_sessions() as s:
        assert repo.get_api_key(s, prefix).revoked_at is None
    _problem(client.delete(f"/v1/keys/{prefix}", headers=bearer(key)), 409, "last-admin-key")
    assert [e["action"] for e in _events(client, key)] == []
    second = client.post("/v1/keys", json={"scope": "admin"}, headers=bearer(key)).json()
    for _ in range(2):  # revoked once, audited once; a repeat answers the revoked key
        r = client.delete(f"/v1/keys/{prefix}", headers=bearer(second["key"]))
        assert r.status_code == 200 and r.json()["revoked_at"] is not None
    assert [e["action"] for e in _events(client, second["key"])] == ["key.revoke", "key.create"]


def test_brute_forcing_keys_from_one_address_meets_429_and_others_still_authenticate(
    pg_url, pg_sessions, dispatcher
):
    settings = ApiSettings(database_url=pg_url, broker_url=None, auth_failure_limit=3)
    app = create_app(settings, dispatcher=dispatcher, sessions=pg_sessions)
    _, key = team_with_key(pg_sessions)
    with (
        TestClient(app, client=("203.0.113.7", 4000)) as attacker,
        TestClient(app, client=("203.0.113.8", 4000)) as neighbour,
    ):
        for _ in range(3):
            guess = f"blv_{uuid.uuid4().hex[:8]}_{uuid.uuid4().hex}"
            _problem(attacker.get("/v1/jobs", headers=bearer(guess)), 401)
        r = attacker.get("/v1/jobs", headers=bearer(key))  # even a right key, unchecked
        body = _problem(r, 429, "auth-throttled")
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert "auth_failure_limit" in body["detail"] and "203.0.113.7" in body["detail"]
        assert neighbour.get("/v1/jobs", headers=bearer(key)).status_code == 200


def test_failed_authentications_are_counted_per_address_in_a_window():
    now = [0.0]
    failures = AuthFailures(2, 60, clock=lambda: now[0])
    failures.failed("a")
    assert failures.retry_after("a") == 0
    now[0] = 10.5
    failures.failed("a")
    assert failures.retry_after("a") == 50  # the rest of the window that began at 0
    assert failures.retry_after("b") == 0
    now[0] = 60.0
    assert failures.retry_after("a") == 0  # the window ended
    failures.failed("a")
    assert failures.retry_after("a") == 0  # a new window, one failure in it
    assert AuthFailures(0, 60).retry_after("a") == 0  # off


@pytest.mark.parametrize(
    ("method", "path", "kw", "field"),
    [
        ("post", "/v1/keys", {"json": {"name": "a\x00b"}}, "name"),
        ("post", "/v1/jobs", {"json": {**tiny_spec(), "name": "a\x00b"}}, "name"),
        ("patch", "/v1/teams/a%00b", {"json": {"weight": 2}}, "path.name"),
        ("post", "/v1/webhooks", {"json": {"url": "http://h/\x00"}}, "url"),
    ],
)
def test_a_nul_in_stored_text_is_a_422_naming_the_field(client, pg_sessions, method, path, kw,
                                                        field):  # fmt: skip
    # PostgreSQL's text cannot hold U+0000: the fuzzer's key name "\u00f9\u00f5k\u0000..."
    # answered 503 (the store's DataError); the schema now states it
    _, key = team_with_key(pg_sessions, scope="admin")
    body = _problem(client.request(method, path, headers=bearer(key), **kw), 422)
    assert [e["field"] for e in body["errors"]] == [field]


def _owned(kind: str, c, key: str) -> str:
    """The id (a key's prefix) of a new object of ``kind`` owned by ``key``'s team."""
    h = bearer(key)
    if kind == "key":
        return c.post("/v1/keys", json={"name": "x"}, headers=h).json()["prefix"]
    if kind == "study":
        body = {"name": "s", "base": tiny_spec(), "grid": {"seed": [0, 1]}}
        return c.post("/v1/studies", json=body, headers=h).json()["id"]
    if kind == "webhook":
        return c.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/h"}, headers=h).json()["id"]
    data = npz_bytes(digits_arrays(n_train=100, n_val=50, seed=random.randrange(1 << 30)))
    octet = {**h, "Content-Type": "application/octet-stream"}
    return c.post("/v1/datasets", params={"name": "d"}, content=data, headers=octet).json()["id"]


@pytest.mark.parametrize(
    ("kind", "method", "path"),
    [("key", "delete", "/v1/keys/{}"), ("study", "post", "/v1/studies/{}/cancel"),
     ("webhook", "get", "/v1/webhooks/{}/deliveries"), ("dataset", "delete", "/v1/datasets/{}")],
)  # fmt: skip
def test_every_refused_cross_team_access_is_audited(hooks_client, pg_sessions, kind, method, path):
    _, owner = team_with_key(pg_sessions, scope="admin")
    _, prober = team_with_key(pg_sessions, scope="admin")
    target = _owned(kind, hooks_client, owner)
    _problem(hooks_client.request(method, path.format(target), headers=bearer(prober)), 404)
    denied = _events(hooks_client, owner, action="access.denied")
    assert [(e["target_type"], e["target_id"], e["own"]) for e in denied] == [(kind, target, False)]
    assert [e["own"] for e in _events(hooks_client, prober)] == [True]
