"""REST API v1 against real PostgreSQL: auth, validation, isolation, listing, traces."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from jobs.store import repo
from jobs.store.models import Job
from tests.factories import example, small_one_shot, team_with_key, tiny_spec

PROBLEM = "application/problem+json"


def _problem(r, status):
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["status"] == status and body["title"] and body["type"] and body["detail"]
    return body


def test_submit_returns_201_queued_and_enqueues_after_commit(client, auth, dispatcher):
    r = client.post("/v1/jobs", json=tiny_spec(), headers=auth)
    assert r.status_code == 201
    job = r.json()
    assert job["status"] == "queued" and job["progress"]["iterations"] == 20
    assert r.headers["location"] == f"/v1/jobs/{job['id']}"
    assert dispatcher.sent == [(uuid.UUID(job["id"]), "cpu")]
    assert client.get(f"/v1/jobs/{job['id']}", headers=auth).json()["id"] == job["id"]


def test_idempotency_key_makes_a_retried_submit_return_the_same_job(client, auth, dispatcher):
    h = {**auth, "Idempotency-Key": "retry-1"}
    a = client.post("/v1/jobs", json=tiny_spec(), headers=h)
    b = client.post("/v1/jobs", json=tiny_spec(), headers=h)
    assert a.json()["id"] == b.json()["id"] and b.headers["idempotent-replayed"] == "true"
    assert len(dispatcher.sent) == 1
    _problem(client.post("/v1/jobs", json=tiny_spec(iterations=3), headers=h), 409)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer blv_0000_nope"},
                                     {"Authorization": "Basic Zm9vOmJhcg=="}])  # fmt: skip
def test_missing_or_wrong_key_is_401_problem(client, headers):
    for method, path in [("get", "/v1/jobs"), ("post", "/v1/jobs"),
                         ("get", f"/v1/jobs/{uuid.uuid4()}/trace")]:  # fmt: skip
        r = client.request(method, path, headers=headers, json=tiny_spec())
        _problem(r, 401)
        assert r.headers["www-authenticate"] == "Bearer"


def test_revoked_key_is_401(client, pg_sessions):
    from tests.factories import key_operator, team_with_key

    _, key = team_with_key(pg_sessions)
    with pg_sessions.begin() as s:
        prefix = key.split("_")[1]
        repo.revoke_api_key(s, prefix, actor=key_operator(s, prefix))
    _problem(client.get("/v1/jobs", headers={"Authorization": f"Bearer {key}"}), 401)


def test_another_teams_job_is_404_on_every_route(client, auth, other_auth):
    job_id = client.post("/v1/jobs", json=tiny_spec(), headers=auth).json()["id"]
    for method, suffix in [("get", ""), ("get", "/trace"), ("get", "/result"),
                           ("get", "/hparams"), ("post", "/cancel")]:  # fmt: skip
        _problem(client.request(method, f"/v1/jobs/{job_id}{suffix}", headers=other_auth), 404)
    assert client.get("/v1/jobs", headers=other_auth).json()["data"] == []
    assert client.get(f"/v1/jobs/{job_id}", headers=auth).status_code == 200


def test_invalid_spec_is_422_problem_naming_each_field(client, auth, dispatcher):
    spec = tiny_spec(steps=10)
    spec["hypergradient"] = {"method": "truncated", "K": 50}
    body = _problem(client.post("/v1/jobs", json=spec, headers=auth), 422)
    assert [e["field"] for e in body["errors"]] == ["hypergradient.K"]
    assert "hypergradient.K" in body["detail"]

    spec = tiny_spec()
    spec["outer"]["iterations"] = "many"
    spec["problem"]["bogus"] = 1
    body = _problem(client.post("/v1/jobs", json=spec, headers=auth), 422)
    assert sorted(e["field"] for e in body["errors"]) == ["outer.iterations", "problem.bogus"]
    assert dispatcher.sent == []


def test_paper_job_options_beyond_their_limits_are_422_naming_field_and_limit(
    client, auth, dispatcher
):
    spec = small_one_shot()
    spec["problem"]["meta_batch"] = 64
    body = _problem(client.post("/v1/jobs", json=spec, headers=auth), 422)
    (err,) = body["errors"]
    assert err["field"] == "problem.meta_batch" and "32" in err["message"]
    spec = example("task_interaction")
    spec["problem"] = {"kind": "task_interaction", "dataset": "digits", "n_tasks": 12}
    body = _problem(client.post("/v1/jobs", json=spec, headers=auth), 422)
    assert [e["field"] for e in body["errors"]] == ["problem.n_tasks"]
    assert "n_tasks must be <= 10" in body["errors"][0]["message"]
    assert dispatcher.sent == []


def test_a_stall_bound_outside_its_limits_is_a_422_naming_the_field_and_limit(
    client, auth, dispatcher
):
    body = _problem(client.post("/v1/jobs", json=tiny_spec(stall_s=0.5), headers=auth), 422)
    assert [e["field"] for e in body["errors"]] == ["stall_s"]
    assert "greater than or equal to 1" in body["errors"][0]["message"]
    assert dispatcher.sent == []
    r = client.post("/v1/jobs", json=tiny_spec(stall_s=30), headers=auth)
    assert r.status_code == 201, r.text


def test_malformed_json_and_bad_query_parameters_are_422_problems(client, auth):
    r = client.post(
        "/v1/jobs", content=b"{not json", headers={**auth, "content-type": "application/json"}
    )
    _problem(r, 422)
    body = _problem(client.get("/v1/jobs?limit=0&status=done", headers=auth), 422)
    assert sorted(e["field"] for e in body["errors"]) == ["query.limit", "query.status"]
    body = _problem(client.get("/v1/jobs?cursor=zzz", headers=auth), 422)
    assert body["errors"][0]["field"] == "query.cursor"


def test_unknown_job_and_bad_id_are_problems(client, auth):
    _problem(client.get(f"/v1/jobs/{uuid.uuid4()}", headers=auth), 404)
    _problem(client.get("/v1/jobs/not-a-uuid", headers=auth), 422)
    _problem(client.get("/v1/nothing", headers=auth), 404)


def test_list_is_newest_first_filters_by_status_and_pages(client, auth):
    ids = [client.post("/v1/jobs", json=tiny_spec(), headers=auth).json()["id"] for _ in range(3)]
    client.post(f"/v1/jobs/{ids[0]}/cancel", headers=auth)
    page = client.get("/v1/jobs?limit=2", headers=auth).json()
    assert [j["id"] for j in page["data"]] == ids[::-1][:2] and page["count"] == 2
    rest = client.get(f"/v1/jobs?limit=2&cursor={page['next_cursor']}", headers=auth).json()
    assert [j["id"] for j in rest["data"]] == [ids[0]] and rest["next_cursor"] is None
    cancelled = client.get("/v1/jobs?status=cancelled", headers=auth).json()["data"]
    assert [j["id"] for j in cancelled] == [ids[0]]


def test_cancel_of_a_queued_job_is_202_cancelled(client, auth):
    job_id = client.post("/v1/jobs", json=tiny_spec(), headers=auth).json()["id"]
    r = client.post(f"/v1/jobs/{job_id}/cancel", headers=auth)
    assert r.status_code == 202 and r.json()["status"] == "cancelled"
    _problem(client.get(f"/v1/jobs/{job_id}/result", headers=auth), 409)
    _problem(client.get(f"/v1/jobs/{job_id}/hparams", headers=auth), 409)


def test_trace_is_columnar_incremental_downsampled_and_etagged(client, auth, pg_sessions):
    job_id = client.post("/v1/jobs", json=tiny_spec(), headers=auth).json()["id"]
    with pg_sessions.begin() as s:
        repo.write_trace(
            s,
            uuid.UUID(job_id),
            [{"iteration": i, "outer_loss": 1.0 / i, "grad_norm": 2.0} for i in range(1, 301)],
        )
    url = f"/v1/jobs/{job_id}/trace"
    r = client.get(url, headers=auth)
    cols = r.json()
    assert cols["iteration"] == list(range(1, 301)) and cols["outer_loss"][1] == 0.5
    assert cols["cosine"] == [None] * 300
    r2 = client.get(url, headers={**auth, "If-None-Match": r.headers["etag"]})
    assert r2.status_code == 304 and r2.content == b""
    tail = client.get(f"{url}?after=295&fields=outer_loss", headers=auth).json()
    assert tail == {"iteration": [296, 297, 298, 299, 300],
                    "outer_loss": [1 / i for i in range(296, 301)]}  # fmt: skip
    small = client.get(f"{url}?max_points=20&fields=outer_loss,grad_norm", headers=auth).json()
    assert len(small["iteration"]) <= 20 and small["iteration"][0] == 1
    assert small["iteration"][-1] == 300 and set(small) == {"iteration", "outer_loss", "grad_norm"}
    # a new point changes the ETag
    with pg_sessions.begin() as s:
        repo.write_trace(s, uuid.UUID(job_id), [{"iteration": 301, "outer_loss": 0.0}])
    r3 = client.get(url, headers={**auth, "If-None-Match": r.headers["etag"]})
    assert r3.status_code == 200 and r3.json()["iteration"][-1] == 301
    body = _problem(client.get(f"{url}?fields=outer_loss,nope", headers=auth), 422)
    assert body["errors"][0]["field"] == "query.fields"


def test_a_job_is_etagged_304_while_unchanged_and_200_after_a_change(client, auth, pg_sessions):
    job_id = client.post("/v1/jobs", json=tiny_spec(), headers=auth).json()["id"]
    url = f"/v1/jobs/{job_id}"
    r = client.get(url, headers=auth)
    assert r.status_code == 200 and r.json()["status"] == "queued"
    etag = r.headers["etag"]
    assert etag.startswith('W/"') and r.headers["cache-control"] == "no-cache"
    again = client.get(url, headers={**auth, "If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    # a progress report that leaves updated_at alone (a heartbeat's summary) still counts
    with pg_sessions.begin() as s:
        s.get(Job, uuid.UUID(job_id)).summary = {"last_outer_loss": 0.5}
    r2 = client.get(url, headers={**auth, "If-None-Match": etag})
    assert r2.status_code == 200 and r2.json()["summary"] == {"last_outer_loss": 0.5}
    assert r2.headers["etag"] != etag
    client.post(f"{url}/cancel", headers=auth)
    r3 = client.get(url, headers={**auth, "If-None-Match": r2.headers["etag"]})
    assert r3.status_code == 200 and r3.json()["status"] == "cancelled"
    assert client.get(url, headers={**auth, "If-None-Match": f'"x", {r3.headers["etag"]}'}
                      ).status_code == 304  # fmt: skip
    # another team's job is still 404, whatever the tag
    _, other = team_with_key(pg_sessions)
    r4 = client.get(url, headers={"Authorization": f"Bearer {other}", "If-None-Match": "*"})
    _problem(r4, 404)


def test_health_and_readiness(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ok", "database": "ok", "broker": "ok"}
    paths = client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200
    submit = paths["/v1/jobs"]["post"]["responses"]
    assert list(submit["422"]["content"]) == ["application/problem+json"]
    assert set(submit) >= {"201", "401", "409", "422"}


def test_readiness_is_503_problem_when_the_broker_is_unreachable(pg_url, pg_sessions):
    from fastapi.testclient import TestClient

    from api import ApiSettings, create_app
    from jobs.dispatch import CeleryDispatcher

    # nothing listens on port 1
    dispatcher = CeleryDispatcher("redis://127.0.0.1:1/0")
    app = create_app(ApiSettings(database_url=pg_url), dispatcher=dispatcher, sessions=pg_sessions)
    with TestClient(app) as c:
        body = _problem(c.get("/readyz"), 503)
    assert body["checks"] == {"database": "ok", "broker": "unreachable"}


def test_the_api_package_never_imports_torch():
    code = (
        "import sys, api, api.main, jobs.store.repo, jobs.dispatch; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
