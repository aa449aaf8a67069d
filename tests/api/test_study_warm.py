"""Warm starts, "search around this job" and parameter importance through ``/v1``."""

from __future__ import annotations

import math
import uuid

import pytest

from jobs.status import JobStatus
from jobs.store import repo
from tests.factories import tiny_spec

PROBLEM = "application/problem+json"
SPACE = {
    "outer.lr": {"type": "float", "low": 1e-3, "high": 0.5, "log": True},
    "hypergradient.K": {"type": "categorical", "choices": [1, 2, 5]},
    "inner.steps": {"type": "int", "low": 5, "high": 15, "step": 5},
}


def _search(**over):
    search = {"params": SPACE, "sampler": "random", "n_trials": 6, "max_concurrent": 6,
              "seed": 3}  # fmt: skip
    search.update(over)
    return {"name": "tune", "base": tiny_spec(iterations=5, steps=15), "search": search}


def _finish(sessions, job_id, loss: float) -> None:
    with sessions.begin() as s:
        claim = repo.claim_job(s, uuid.UUID(str(job_id)), "w:1", 60)
        assert repo.finish_job(s, claim, JobStatus.SUCCEEDED, iteration=5,
                               summary={"final_outer_loss": loss, "run_s": 1.0})  # fmt: skip


def _lr_only(values) -> float:
    """An objective of the outer lr alone."""
    return math.log(values["outer.lr"] / 0.02) ** 2


def _finished_study(client, auth, sessions, **over) -> dict:
    study = client.post("/v1/studies", json=_search(**over), headers=auth).json()
    for m in study["members"]:
        _finish(sessions, m["job_id"], _lr_only(m["values"]))
    return client.get(f"/v1/studies/{study['id']}", headers=auth).json()


def test_a_search_warm_started_from_an_earlier_one_says_what_its_sampler_saw(
    client, auth, pg_sessions
):
    earlier = _finished_study(client, auth, pg_sessions)
    body = _search(sampler="tpe", n_trials=3, max_concurrent=1,
                   warm_start={"studies": [earlier["id"]]})  # fmt: skip
    r = client.post("/v1/studies", json=body, headers=auth)
    assert r.status_code == 201, r.text
    got = r.json()
    assert got["warm_start"] == {"trials": 6, "skipped": {"not_succeeded": 0, "no_objective": 0,
                                                          "outside_space": 0}}  # fmt: skip
    assert got["search"]["warm_start"] == {"studies": [earlier["id"]], "jobs": []}
    assert len(got["members"]) == 1


@pytest.mark.parametrize("kind", ["studies", "jobs"])
def test_another_teams_study_or_job_is_a_422_naming_the_field(client, auth, other_auth, kind):
    theirs = client.post("/v1/studies", json=_search(), headers=other_auth).json()
    ids = {"studies": theirs["id"], "jobs": theirs["members"][0]["job_id"]}
    body = _search(warm_start={kind: [ids[kind]] if kind == "jobs" else [
        str(uuid.uuid4()), ids[kind]]})  # fmt: skip
    r = client.post("/v1/studies", json=body, headers=auth)
    assert r.status_code == 422 and r.headers["content-type"].startswith(PROBLEM)
    fields = [e["field"] for e in r.json()["errors"]]
    if kind == "studies":  # an unknown id and another team's, each at its index
        assert fields == ["search.warm_start.studies.0", "search.warm_start.studies.1"]
    else:
        assert fields == ["search.warm_start.jobs.0"]
    assert f"no {kind[:-1]} {ids[kind]} for this team" in r.text
    assert client.get("/v1/studies", headers=auth).json()["count"] == 0


def test_the_study_view_ranks_the_path_its_objective_depends_on_first(client, auth, pg_sessions):
    study = _finished_study(client, auth, pg_sessions, n_trials=12, max_concurrent=12)
    imp = study["importance"]
    assert imp["evaluator"] == "ped_anova" and imp["trials"] == 12
    assert imp["objective"] == "final_outer_loss"
    assert next(iter(imp["params"])) == "outer.lr"
    assert set(imp["params"]) == set(SPACE)
    # too few complete members: none
    fresh = client.post("/v1/studies", json=_search(seed=4), headers=auth).json()
    assert fresh["importance"] is None


def test_search_around_a_job_searches_its_neighbourhood_warm_started_by_it(
    client, auth, other_auth, pg_sessions
):
    spec = tiny_spec(iterations=5, steps=10, name="base run")
    spec["outer"]["lr"] = 0.06
    spec["hypergradient"]["K"] = 4
    job = client.post("/v1/jobs", json=spec, headers=auth).json()
    _finish(pg_sessions, job["id"], 0.5)
    r = client.post(f"/v1/jobs/{job['id']}/search-around",
                    json={"n_trials": 5, "max_concurrent": 3}, headers=auth)  # fmt: skip
    assert r.status_code == 201, r.text
    study = r.json()
    assert r.headers["location"] == f"/v1/studies/{study['id']}"
    assert study["name"] == "around base run" and study["warm_start"]["trials"] == 1
    params = study["search"]["params"]
    lr = params["outer.lr"]
    assert lr["log"] and math.isclose(lr["low"], 0.02) and math.isclose(lr["high"], 0.18)
    assert params["hypergradient.K"]["choices"] == [2, 4, 8]
    assert (params["inner.steps"]["low"], params["inner.steps"]["high"]) == (8, 20)
    assert len(study["members"]) == 3
    for m in study["members"]:
        member = client.get(f"/v1/jobs/{m['job_id']}", headers=auth).json()["spec"]
        assert 0.02 <= member["outer"]["lr"] <= 0.18
        assert member["hypergradient"]["K"] <= member["inner"]["steps"]
        assert member["problem"] == spec["problem"]  # the rest is the job's
    missing = client.post(f"/v1/jobs/{job['id']}/search-around", json={}, headers=other_auth)
    assert missing.status_code == 404 and missing.headers["content-type"].startswith(PROBLEM)
    bad = client.post(f"/v1/jobs/{job['id']}/search-around", json={"n_trials": 0},
                      headers=auth)  # fmt: skip
    assert bad.status_code == 422 and "n_trials" in bad.text
