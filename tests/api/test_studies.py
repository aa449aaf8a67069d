"""``/v1/studies`` against real PostgreSQL: grids, atomicity, quotas, the table, cancel."""

from __future__ import annotations

import uuid

import pytest

from jobs import repo
from jobs.status import JobStatus
from jobs.studies.table import mean_std
from tests.factories import tiny_spec

PROBLEM = "application/problem+json"


def _study(name="sweep", **grid):
    base = tiny_spec(iterations=5, steps=10)
    return {"name": name, "base": base,
            "grid": grid or {"hypergradient.K": [1, 5], "seed": [0, 1]}}  # fmt: skip


def _problem(r, status):
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    return r.json()


def test_create_makes_one_queued_job_per_combination_and_sends_each(client, auth, dispatcher):
    r = client.post("/v1/studies", json=_study(), headers=auth)
    assert r.status_code == 201, r.text
    study = r.json()
    assert r.headers["location"] == f"/v1/studies/{study['id']}"
    values = [m["values"] for m in study["members"]]
    assert values == [{"hypergradient.K": k, "seed": s} for k in (1, 5) for s in (0, 1)]
    assert [m["status"] for m in study["members"]] == ["queued"] * 4
    assert {uuid.UUID(m["job_id"]) for m in study["members"]} == {j for j, _ in dispatcher.sent}
    job = client.get(f"/v1/jobs/{study['members'][3]['job_id']}", headers=auth).json()
    assert job["spec"]["hypergradient"]["K"] == 5
    assert job["spec"]["seed"] == 1
    assert study["group_by"] == ["hypergradient.K"]  # seeds are averaged over
    assert study["status"] == "queued" and study["progress"]["members"] == 4


def test_a_retried_create_with_the_same_idempotency_key_makes_one_study(
    make_client, auth, other_auth, dispatcher
):
    # the team's queue holds one study: a second create would be over quota, a replay is not
    client = make_client(max_queued_jobs=4)
    h = {**auth, "Idempotency-Key": "study-retry-1"}
    a = client.post("/v1/studies", json=_study(), headers=h)
    b = client.post("/v1/studies", json=_study(), headers=h)
    assert a.status_code == b.status_code == 201, b.text
    assert b.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in a.headers
    assert b.json()["id"] == a.json()["id"] and b.headers["location"] == a.headers["location"]
    assert b.json()["members"] == a.json()["members"]
    assert [s["id"] for s in client.get("/v1/studies", headers=auth).json()["data"]] == [
        a.json()["id"]
    ]
    assert len(dispatcher.sent) == 4  # the replay sends nothing
    body = _problem(client.post("/v1/studies", json=_study(name="other"), headers=h), 409)
    assert body["type"].endswith("idempotency-conflict") and a.json()["id"] in body["detail"]
    # a key is the team's own: another team's same key makes its own study
    c = client.post(
        "/v1/studies", json=_study(), headers={**other_auth, "Idempotency-Key": "study-retry-1"}
    )
    assert c.status_code == 201 and c.json()["id"] != a.json()["id"]


def test_K_with_full_is_skipped_and_listed_once_full_runs(client, auth):
    grid = {"hypergradient.K": [1, 5], "hypergradient.method": ["truncated", "full"]}
    study = client.post("/v1/studies", json=_study(**grid), headers=auth).json()
    values = [m["values"] for m in study["members"]]
    assert {"hypergradient.K": None, "hypergradient.method": "full"} in values
    assert len(values) == 3
    assert len(study["skipped"]) == 1
    skipped = study["skipped"][0]
    assert skipped["values"] == {"hypergradient.K": 5, "hypergradient.method": "full"}
    assert "hypergradient.K does not apply" in skipped["reason"]


@pytest.mark.parametrize(
    ("grid", "field", "words"),
    [
        ({"hypergradient.k": [1]}, "grid.hypergradient.k", "unknown spec path"),
        ({"hypergradient.K": []}, "grid.hypergradient.K", "empty"),
        ({"hypergradient.K": 5}, "grid.hypergradient.K", "must be a list"),
        ({"hypergradient.K": [1, 0]}, "grid.hypergradient.K", "value 0 is rejected"),
        ({"hypergradient.K": [1, 11]}, "grid.hypergradient.K", "value 11 is rejected"),
        ({"outer.lr": ["fast"]}, "grid.outer.lr", "value 'fast' is rejected"),
    ],
)
def test_bad_grid_is_422_naming_the_path_and_value(client, auth, grid, field, words):
    body = _problem(client.post("/v1/studies", json=_study(**grid), headers=auth), 422)
    assert body["errors"][0]["field"] == field
    assert words in body["errors"][0]["message"]


def test_a_grid_over_the_member_limit_is_422_naming_the_limit(make_client, auth):
    c = make_client(max_study_members=5)
    r = c.post("/v1/studies", json=_study(**{"seed": [0, 1, 2], "hypergradient.K": [1, 2]}),
               headers=auth)  # fmt: skip
    body = _problem(r, 422)
    assert body["limit"] == 5
    assert "6 combinations, over the limit of 5 (max_study_members)" in body["detail"]


def test_a_study_past_the_queued_quota_creates_nothing(make_client, auth, pg_sessions):
    c = make_client(max_queued_jobs=3)
    body = _problem(c.post("/v1/studies", json=_study(), headers=auth), 429)
    assert body["limit"] == 3
    assert c.get("/v1/studies", headers=auth).json()["count"] == 0
    assert c.get("/v1/jobs", headers=auth).json()["count"] == 0


def test_another_teams_study_is_404(client, auth, other_auth):
    sid = client.post("/v1/studies", json=_study(), headers=auth).json()["id"]
    _problem(client.get(f"/v1/studies/{sid}", headers=other_auth), 404)
    _problem(client.post(f"/v1/studies/{sid}/cancel", headers=other_auth), 404)
    assert client.get("/v1/studies", headers=other_auth).json()["count"] == 0


def test_the_table_is_mean_and_std_of_the_members_results(client, auth, pg_sessions):
    study = client.post("/v1/studies", json=_study(), headers=auth).json()
    losses = [0.5, 0.7, 0.2, 0.25]
    claims = []
    for m, loss in zip(study["members"], losses):
        with pg_sessions.begin() as s:
            claims.append(repo.claim_job(s, uuid.UUID(m["job_id"]), "w:1", 60))
        summary = {"final_outer_loss": loss, "metrics": {"acc": 1 - loss},
                   "s_per_iteration": loss / 10, "peak_bytes": 1000 * loss}  # fmt: skip
        with pg_sessions.begin() as s:
            assert repo.finish_job(s, claims[-1], JobStatus.SUCCEEDED, summary=summary)
    got = client.get(f"/v1/studies/{study['id']}", headers=auth).json()
    assert got["status"] == "succeeded"
    rows = {r["values"]["hypergradient.K"]: r for r in got["table"]}
    for K, pair in ((1, losses[:2]), (5, losses[2:])):
        mean, std = mean_std(pair)
        stats = rows[K]["stats"]
        assert stats["final_outer_loss"]["mean"] == pytest.approx(mean)
        assert stats["final_outer_loss"]["std"] == pytest.approx(std)
        assert stats["acc"]["mean"] == pytest.approx(1 - mean)
        assert stats["s_per_iteration"]["mean"] == pytest.approx(mean / 10)
        assert stats["peak_bytes"]["n"] == 2


def test_cancel_cancels_every_queued_member(client, auth):
    study = client.post("/v1/studies", json=_study(), headers=auth).json()
    r = client.post(f"/v1/studies/{study['id']}/cancel", headers=auth)
    assert r.status_code == 202
    got = r.json()
    assert [m["status"] for m in got["members"]] == ["cancelled"] * 4
    assert got["status"] == "cancelled" and got["cancel_requested"]
