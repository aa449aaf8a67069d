"""Security of the REST API against real PostgreSQL (and Redis for the shared rate limit):
keyed key hashes and admin scope, team isolation on every route, body size limit, per-key
rate limit, per-team quotas, compute budget, and specs that can only name registered code.
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import hmac
import json
import logging
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from api import ApiSettings, create_app
from jobs import keys
from jobs.store import repo
from jobs.store.models import ApiKey, Job
from tests.conftest import KEY_SECRET
from tests.factories import bearer, team_with_key, tiny_spec

PROBLEM = "application/problem+json"
ROOT = Path(__file__).resolve().parents[2]


def _problem(r, status: int, slug: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["status"] == status and body["title"] and body["detail"]
    if slug:
        assert body["type"] == f"/problems/{slug}"
    return body


@pytest.fixture
def admin(pg_sessions):
    team_id, key = team_with_key(pg_sessions, scope="admin")
    return team_id, key


# -- keys: keyed hash, legacy rehash, admin scope -------------------------------------------


def _row(sessions, key: str) -> ApiKey:
    with sessions() as s:
        return s.scalar(select(ApiKey).where(ApiKey.prefix == key.split("_")[1]))


def test_keys_are_stored_as_an_hmac_under_the_server_secret(pg_sessions, client):
    _, key = team_with_key(pg_sessions)
    row = _row(pg_sessions, key)
    assert key.startswith(f"blv_{row.prefix}_") and row.hash_scheme == "hmac-sha256"
    assert row.key_hash == hmac.new(KEY_SECRET.encode(), key.encode(), "sha256").hexdigest()
    assert row.key_hash != hashlib.sha256(key.encode()).hexdigest()
    assert client.get("/v1/jobs", headers=bearer(key)).status_code == 200
    # the right prefix with a wrong secret part, and a key hashed under another secret
    _problem(client.get("/v1/jobs", headers=bearer(key[:-2] + "zz")), 401, "unauthorized")
    with pg_sessions.begin() as s:
        team = repo.ensure_team(s, f"t-{uuid.uuid4().hex[:6]}")
        _, foreign = repo.create_api_key(
            s, team, secret=b"another-secret" * 4, actor=repo.Actor.operator(team.id)
        )
    _problem(client.get("/v1/jobs", headers=bearer(foreign)), 401)


def test_a_legacy_sha256_key_is_accepted_and_rehashed_to_hmac(pg_sessions, client):
    _, key = team_with_key(pg_sessions)
    with pg_sessions.begin() as s:  # as the rows written before migration 0003 are
        s.execute(
            update(ApiKey)
            .where(ApiKey.prefix == key.split("_")[1])
            .values(key_hash=hashlib.sha256(key.encode()).hexdigest(), hash_scheme="sha256")
        )
    _problem(client.get("/v1/jobs", headers=bearer(key + "x")), 401)
    assert _row(pg_sessions, key).hash_scheme == "sha256"  # a wrong key changes nothing
    assert client.get("/v1/jobs", headers=bearer(key)).status_code == 200
    row = _row(pg_sessions, key)
    assert row.hash_scheme == "hmac-sha256"
    assert row.key_hash == hmac.new(KEY_SECRET.encode(), key.encode(), "sha256").hexdigest()
    assert client.get("/v1/jobs", headers=bearer(key)).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("get", "/v1/keys", None), ("post", "/v1/keys", {"name": "x"}),
     ("delete", "/v1/keys/00000000", None), ("get", "/v1/audit", None)],
)  # fmt: skip
def test_key_management_needs_an_admin_key(client, auth, method, path, body):
    body = _problem(client.request(method, path, headers=auth, json=body), 403, "forbidden")
    assert "admin" in body["detail"] and "scope 'team'" in body["detail"]


def test_an_admin_key_lists_creates_and_revokes_its_teams_keys(client, admin, pg_sessions):
    _, key = admin
    h = bearer(key)
    r = client.post("/v1/keys", json={"name": "ci"}, headers=h)
    assert r.status_code == 201 and r.headers["cache-control"] == "no-store"
    new = r.json()
    assert new["key"].startswith(f"blv_{new['prefix']}_") and new["scope"] == "team"
    assert client.get("/v1/jobs", headers=bearer(new["key"])).status_code == 200
    _problem(client.get("/v1/keys", headers=bearer(new["key"])), 403)  # a team key

    listed = client.get("/v1/keys", headers=h).json()
    assert listed["count"] == 2 and [k["name"] for k in listed["data"]] == ["", "ci"]
    assert set(listed["data"][1]) == {"prefix", "name", "scope", "created_at", "revoked_at"}
    assert new["key"] not in json.dumps(listed)

    r = client.delete(f"/v1/keys/{new['prefix']}", headers=h)
    assert r.status_code == 200 and r.json()["revoked_at"] is not None
    _problem(client.get("/v1/jobs", headers=bearer(new["key"])), 401)
    assert client.delete(f"/v1/keys/{new['prefix']}", headers=h).status_code == 200  # idempotent
    _problem(client.delete("/v1/keys/ffffffff", headers=h), 404, "not-found")
    _problem(client.delete("/v1/keys/NOT-HEX", headers=h), 422)

    admin2 = client.post("/v1/keys", json={"name": "ops", "scope": "admin"}, headers=h).json()
    assert client.get("/v1/keys", headers=bearer(admin2["key"])).json()["count"] == 3
    body = _problem(client.post("/v1/keys", json={"scope": "root"}, headers=h), 422)
    assert [e["field"] for e in body["errors"]] == ["scope"]


# -- team isolation ----------------------------------------------------------------------------

JOB_ROUTES = [
    ("get", ""),
    ("get", "/trace"),
    ("get", "/result"),
    ("get", "/hparams"),
    ("get", "/learned"),
    ("post", "/cancel"),
    ("post", "/search-around"),
]


def test_the_isolation_tests_cover_every_job_route(client):
    """A new ``/v1/jobs/{job_id}...`` route must be added to JOB_ROUTES (and so be tested)."""
    paths = client.get("/openapi.json").json()["paths"]
    routes = {
        (method, path.removeprefix("/v1/jobs/{job_id}"))
        for path, ops in paths.items()
        if path.startswith("/v1/jobs/{job_id}")
        for method in ops
    }
    assert routes == set(JOB_ROUTES)
    # no compare route on the server: the dashboard compares jobs it fetched one by one
    assert not [p for p in paths if "compare" in p]
    # /v1/pool shows other teams' names and counts only (tests/api/test_pool.py)
    assert set(paths) <= {"/healthz", "/readyz", "/v1/jobs", "/v1/keys", "/v1/keys/{prefix}",
                          "/v1/pool", "/v1/teams/{name}", "/v1/datasets", "/v1/problems",
                          "/v1/studies", "/v1/webhooks", "/v1/audit",
                          *(f"/v1/jobs/{{job_id}}{s}" for _, s in JOB_ROUTES),
                          *(f"/v1/datasets/{{dataset_id}}{s}" for _, s in DATASET_ROUTES),
                          *(f"/v1/studies/{{study_id}}{s}" for _, s in STUDY_ROUTES),
                          *(f"/v1/webhooks/{{webhook_id}}{s}"
                            for _, s in WEBHOOK_ROUTES)}  # fmt: skip
    datasets = {
        (method, path.removeprefix("/v1/datasets/{dataset_id}"))
        for path, ops in paths.items()
        if path.startswith("/v1/datasets/{dataset_id}")
        for method in ops
    }
    assert datasets == set(DATASET_ROUTES)


# each answers 404 for another team's data set: tests/api/test_datasets.py
DATASET_ROUTES = [("get", ""), ("delete", "")]


# a study's and a webhook's routes: another team's answer 404, like a missing one
STUDY_ROUTES = [("get", ""), ("post", "/cancel")]
WEBHOOK_ROUTES = [("delete", ""), ("get", "/deliveries")]


@pytest.mark.parametrize(("method", "suffix"), STUDY_ROUTES)
def test_another_teams_study_is_404(client, auth, pg_sessions, method, suffix):
    body = {"name": "s", "base": tiny_spec(), "grid": {"seed": [0, 1]}}
    sid = client.post("/v1/studies", json=body, headers=auth).json()["id"]
    _, other = team_with_key(pg_sessions, scope="admin")
    r = client.request(method, f"/v1/studies/{sid}{suffix}", headers=bearer(other))
    assert _problem(r, 404, "not-found")["detail"] == f"no study {sid}"


@pytest.mark.parametrize(("method", "suffix"), WEBHOOK_ROUTES)
def test_another_teams_webhook_is_404(make_client, pg_sessions, method, suffix):
    c = make_client(webhook_allow=["127.0.0.0/8"])
    _, mine = team_with_key(pg_sessions, scope="admin")
    _, other = team_with_key(pg_sessions, scope="admin")
    hook = c.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/h"}, headers=bearer(mine))
    wid = hook.json()["id"]
    r = c.request(method, f"/v1/webhooks/{wid}{suffix}", headers=bearer(other))
    assert _problem(r, 404, "not-found")["detail"] == f"no webhook {wid}"
    assert c.get("/v1/webhooks", headers=bearer(other)).json()["count"] == 0


@pytest.mark.parametrize("scope", ["team", "admin"])
@pytest.mark.parametrize(("method", "suffix"), JOB_ROUTES)
def test_another_teams_job_is_404_not_403(client, auth, pg_sessions, method, suffix, scope):
    job_id = client.post("/v1/jobs", json=tiny_spec(), headers=auth).json()["id"]
    _, other = team_with_key(pg_sessions, scope=scope)
    payload = {} if method == "post" else None  # a valid body: search-around's has defaults
    r = client.request(method, f"/v1/jobs/{job_id}{suffix}", headers=bearer(other), json=payload)
    body = _problem(r, 404, "not-found")
    assert body["detail"] == f"no job {job_id}"  # the same words as for a missing job
    assert client.get("/v1/jobs", headers=bearer(other)).json()["data"] == []
    assert client.get(f"/v1/jobs/{job_id}", headers=auth).json()["status"] == "queued"


def test_another_teams_admin_cannot_see_or_revoke_our_keys(client, admin, pg_sessions):
    _, ours = admin
    _, theirs = team_with_key(pg_sessions, scope="admin")
    our_prefix = ours.split("_")[1]
    listed = client.get("/v1/keys", headers=bearer(theirs)).json()["data"]
    assert our_prefix not in {k["prefix"] for k in listed} and len(listed) == 1
    _problem(client.delete(f"/v1/keys/{our_prefix}", headers=bearer(theirs)), 404)
    assert client.get("/v1/keys", headers=bearer(ours)).json()["data"][0]["revoked_at"] is None


# -- request body size ----------------------------------------------------------------------


def test_a_declared_content_length_over_the_limit_is_413_before_reading(
    make_client, auth, dispatcher
):
    c = make_client(max_body_bytes=2048)
    body = json.dumps({**tiny_spec(), "name": "x" * 3000}).encode()
    r = c.post("/v1/jobs", content=body, headers={**auth, "content-type": "application/json"})
    assert "2048" in _problem(r, 413, "body-too-large")["detail"]
    assert dispatcher.sent == []
    assert c.post("/v1/jobs", json=tiny_spec(), headers=auth).status_code == 201


def test_a_chunked_body_growing_past_the_limit_is_413(make_client, auth, dispatcher):
    c = make_client(max_body_bytes=2048)

    def chunks():  # no Content-Length: httpx sends it chunked
        yield b'{"name": "'
        for _ in range(10):
            yield b"x" * 512
        yield b'"}'

    r = c.post("/v1/jobs", content=chunks(), headers={**auth, "content-type": "application/json"})
    assert "content-length" not in {k.lower() for k in r.request.headers}
    assert "streamed body" in _problem(r, 413, "body-too-large")["detail"]
    assert dispatcher.sent == []


def test_the_body_limit_stops_reading_a_stream_at_the_limit(pg_url, pg_sessions, dispatcher):
    """Straight through ASGI: many small chunks, refused soon after the 2 KiB mark."""
    settings = ApiSettings(database_url=pg_url, broker_url=None, max_body_bytes=2048)
    app = create_app(settings, dispatcher=dispatcher, sessions=pg_sessions)
    pulled, sent = 0, []

    async def receive():
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"x" * 256, "more_body": pulled < 1000}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/jobs", "raw_path": b"/v1/jobs",
             "query_string": b"", "headers": [(b"content-type", b"application/json")],
             "http_version": "1.1", "scheme": "http", "server": ("t", 80), "client": ("c", 1),
             "root_path": "", "asgi": {"version": "3.0"}}  # fmt: skip
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 413 and pulled == 2048 // 256 + 1
    assert json.loads(sent[1]["body"])["type"] == "/problems/body-too-large"


# -- rate limit -------------------------------------------------------------------------------


def test_the_in_process_token_bucket_refills_and_rounds_retry_after_up():
    from api.ratelimit import MemoryBuckets

    now = [0.0]
    b = MemoryBuckets(rate=2.0, burst=3, clock=lambda: now[0])
    assert [b.take("k").allowed for _ in range(4)] == [True, True, True, False]
    assert b.take("k").retry_after_s == 1  # 0.5 s to the next token: rounded up, >= 1
    assert b.take("other").allowed  # buckets are per key
    now[0] += 0.5
    assert b.take("k").allowed and not b.take("k").allowed
    now[0] += 100
    assert sum(b.take("k").allowed for _ in range(10)) == 3  # refilled to the burst only


def test_a_key_over_its_rate_is_429_with_retry_after(make_client, pg_sessions):
    c = make_client(rate_limit_per_s=0.01, rate_limit_burst=3)
    _, key = team_with_key(pg_sessions)
    _, other = team_with_key(pg_sessions)
    assert [c.get("/v1/jobs", headers=bearer(key)).status_code for _ in range(3)] == [200] * 3
    r = c.get("/v1/jobs", headers=bearer(key))
    body = _problem(r, 429, "rate-limited")
    assert 1 <= int(r.headers["retry-after"]) <= 100 and "rate_limit_per_s" in body["detail"]
    assert c.get("/v1/jobs", headers=bearer(other)).status_code == 200
    # unauthenticated requests spend nothing and still get their 401
    _problem(c.get("/v1/jobs", headers=bearer(key + "x")), 401)


def test_api_processes_share_one_budget_in_redis(pg_url, pg_sessions, dispatcher, redis_url):
    namespace = f"test{uuid.uuid4().hex[:8]}"
    settings = ApiSettings(database_url=pg_url, broker_url=redis_url, queue_prefix=namespace,
                           rate_limit_per_s=0.01, rate_limit_burst=4)  # fmt: skip
    _, key = team_with_key(pg_sessions)
    h = bearer(key)
    apps = [create_app(settings, dispatcher=dispatcher, sessions=pg_sessions) for _ in range(2)]
    with TestClient(apps[0]) as a, TestClient(apps[1]) as b:
        codes = [c.get("/v1/jobs", headers=h).status_code for c in (a, b, a, b)]
        assert codes == [200] * 4
        r = b.get("/v1/jobs", headers=h)
        assert _problem(r, 429, "rate-limited") and int(r.headers["retry-after"]) >= 1
        _problem(a.get("/v1/jobs", headers=h), 429)
    import redis

    assert redis.Redis.from_url(redis_url).delete(f"{namespace}:ratelimit:{key.split('_')[1]}")


def test_an_unreachable_redis_fails_open_with_a_warning(pg_url, pg_sessions, dispatcher, caplog):
    settings = ApiSettings(database_url=pg_url, broker_url="redis://127.0.0.1:1/0",
                           rate_limit_per_s=0.01, rate_limit_burst=1)  # fmt: skip
    _, key = team_with_key(pg_sessions)
    app = create_app(settings, dispatcher=dispatcher, sessions=pg_sessions)
    with caplog.at_level(logging.WARNING, logger="api.ratelimit"), TestClient(app) as c:
        assert [c.get("/v1/jobs", headers=bearer(key)).status_code for _ in range(3)] == [200] * 3
    assert "Redis unavailable" in caplog.text


# -- quotas -----------------------------------------------------------------------------------


def test_a_submit_over_the_queued_quota_is_429_but_a_replay_still_succeeds(
    make_client, auth, dispatcher
):
    c = make_client(max_queued_jobs=2, quota_retry_after_s=7)
    first = c.post("/v1/jobs", json=tiny_spec(), headers={**auth, "Idempotency-Key": "a"})
    assert first.status_code == 201
    assert c.post("/v1/jobs", json=tiny_spec(), headers=auth).status_code == 201
    r = c.post("/v1/jobs", json=tiny_spec(), headers=auth)
    body = _problem(r, 429, "quota-exceeded")
    assert r.headers["retry-after"] == "7" and (body["limit"], body["current"]) == (2, 2)
    assert "2 queued jobs" in body["detail"] and "limit of 2 (max_queued_jobs)" in body["detail"]
    replay = c.post("/v1/jobs", json=tiny_spec(), headers={**auth, "Idempotency-Key": "a"})
    assert replay.status_code == 201 and replay.json()["id"] == first.json()["id"]
    assert replay.headers["idempotent-replayed"] == "true" and len(dispatcher.sent) == 2
    # a finished job frees its place
    c.post(f"/v1/jobs/{first.json()['id']}/cancel", headers=auth)
    assert c.post("/v1/jobs", json=tiny_spec(), headers=auth).status_code == 201


def test_a_submit_over_the_running_quota_is_429(make_client, auth, pg_sessions):
    c = make_client(max_running_jobs=1)
    job_id = c.post("/v1/jobs", json=tiny_spec(), headers=auth).json()["id"]
    with pg_sessions.begin() as s:
        s.execute(update(Job).where(Job.id == uuid.UUID(job_id)).values(status="running"))
    body = _problem(c.post("/v1/jobs", json=tiny_spec(), headers=auth), 429, "quota-exceeded")
    assert "1 running jobs" in body["detail"] and "max_running_jobs" in body["detail"]


# -- compute budget and registered code only -------------------------------------------------


def test_a_spec_over_the_compute_budget_is_422_naming_the_field(make_client, auth, dispatcher):
    c = make_client(max_inner_steps=1000, max_graph_bytes=1 << 20)
    body = _problem(c.post("/v1/jobs", json=tiny_spec(iterations=200, steps=10), headers=auth),
                    422, "validation-error")  # fmt: skip
    (err,) = body["errors"]
    assert err["field"] == "outer.iterations"
    assert "10 x 200 = 2000" in err["message"] and "limit of 1000" in err["message"]

    spec = tiny_spec(iterations=2, steps=500)
    spec["problem"] = {"kind": "hypercleaning", "n_train": 1000}
    spec["hypergradient"] = {"method": "full"}
    spec["diagnostics"]["every"] = 0
    (err,) = _problem(c.post("/v1/jobs", json=spec, headers=auth), 422)["errors"]
    assert err["field"] == "inner.steps" and "1048576 bytes" in err["message"]
    spec["hypergradient"] = {"method": "truncated", "K": 400}
    (err,) = _problem(c.post("/v1/jobs", json=spec, headers=auth), 422)["errors"]
    assert err["field"] == "hypergradient.K" and "got hypergradient.K=400" in err["message"]
    spec["hypergradient"]["K"] = 1
    assert c.post("/v1/jobs", json=spec, headers=auth).status_code == 201
    assert len(dispatcher.sent) == 1


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("problem", "kind"), "os.system", "problem.kind"),
        (("problem", "kind"), "core.problems.toy.Toy", "problem.kind"),
        (("problem", "kind"), "__import__('os').system('id')", "problem.kind"),
        (("hypergradient", "method"), "pickle.loads", "hypergradient.method"),
        (("hypergradient", "method"), "core.estimators.Full", "hypergradient.method"),
        (("problem", "dataset"), "../../etc/passwd", "problem.dataset"),
    ],
)
def test_a_spec_names_only_registered_problems_and_estimators(
    client, auth, dispatcher, path, value, field
):
    spec = tiny_spec()
    if path[1] == "dataset":
        spec["problem"] = {"kind": "hypercleaning"}
    spec[path[0]][path[1]] = value
    body = _problem(client.post("/v1/jobs", json=spec, headers=auth), 422)
    assert field in [e["field"] for e in body["errors"]] and dispatcher.sent == []


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            base = getattr(f.value, "id", "") if isinstance(f, ast.Attribute) else ""
            yield node, base, name


# The one dynamic import: a plugin's factory, whose "module:attr" comes from an installed
# package's entry point metadata (an operator's install), never from a request; the test
# below checks that a spec cannot name a factory.
PLUGIN_IMPORT = ("jobs/kinds/base.py", "import_module")


def test_the_service_never_unpickles_or_evaluates_request_data():
    """Checkpoint loads are tensors-only; nothing imports pickle or evaluates strings."""
    unsafe_modules = {"pickle", "cPickle", "dill", "cloudpickle", "marshal", "shelve", "joblib"}
    loads = plugin_imports = 0
    for package in ("api", "jobs", "worker"):
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    names = {a.name.split(".")[0] for a in node.names}
                    if isinstance(node, ast.ImportFrom) and node.module:
                        names = {node.module.split(".")[0]}
                    assert not names & unsafe_modules, f"{path}:{node.lineno}"
            for node, base, name in _calls(tree):
                if (path.relative_to(ROOT).as_posix(), name) == PLUGIN_IMPORT:
                    plugin_imports += 1
                    continue
                assert name not in ("eval", "exec", "import_module", "__import__"), (
                    f"{path}:{node.lineno}: {name}"
                )
                if base == "torch" and name == "load":
                    loads += 1
                    kw = {k.arg: k.value for k in node.keywords}
                    assert isinstance(kw.get("weights_only"), ast.Constant), f"{path}:{node.lineno}"
                    assert kw["weights_only"].value is True, f"{path}:{node.lineno}"
    assert loads >= 1  # the worker's checkpoint load is found and checked
    assert plugin_imports == 1  # the one allowed import: see PLUGIN_IMPORT
    from worker.app import app

    assert app.conf.task_serializer == "json" and set(app.conf.accept_content) == {"json"}


def test_a_rotated_secret_keeps_old_keys_working_and_moves_them(make_client, pg_sessions):
    """Old secret in BILEVEL_KEY_SECRET_PREVIOUS: old keys verify and are rehashed on use."""
    old, new = b"old-secret-" * 4, "new-secret-" * 4
    with pg_sessions.begin() as s:
        team = repo.ensure_team(s, f"t-{uuid.uuid4().hex[:6]}")
        _, key = repo.create_api_key(s, team, secret=old, actor=repo.Actor.operator(team.id))
    assert _row(pg_sessions, key).secret_id == keys.secret_id(old)
    without = make_client(key_secret=new)
    _problem(without.get("/v1/jobs", headers=bearer(key)), 401)  # no previous: locked out
    rotating = make_client(key_secret=new, key_secret_previous=old.decode())
    _problem(rotating.get("/v1/jobs", headers=bearer(key[:-1] + "z")), 401)
    assert _row(pg_sessions, key).secret_id == keys.secret_id(old)  # a wrong key moves nothing
    assert rotating.get("/v1/jobs", headers=bearer(key)).status_code == 200
    row = _row(pg_sessions, key)
    assert row.secret_id == keys.secret_id(new.encode())
    assert row.key_hash == hmac.new(new.encode(), key.encode(), "sha256").hexdigest()
    # moved: the new secret alone verifies it now, the old one no longer does
    assert make_client(key_secret=new).get("/v1/jobs", headers=bearer(key)).status_code == 200
    _problem(make_client(key_secret=old.decode()).get("/v1/jobs", headers=bearer(key)), 401)


def test_a_spec_cannot_name_a_plugin_factory():
    """Only an installed entry point names code: ``factory`` in a spec is an unknown field."""
    from jobs.specs.job import parse_spec

    spec = tiny_spec()
    spec["problem"] = {"kind": "digits_mlp", "factory": "os:system"}
    with pytest.raises(ValueError) as info:
        parse_spec(spec)
    assert "problem.factory" in str(info.value).replace("problem.digits_mlp.", "problem.")
