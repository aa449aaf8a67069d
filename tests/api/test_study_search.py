"""``POST /v1/studies`` with a ``search``: its first trials, and bad searches as 422s."""

from __future__ import annotations

import math

import pytest

from tests.factories import tiny_spec

PROBLEM = "application/problem+json"

SPACE = {
    "outer.lr": {"type": "float", "low": 1e-3, "high": 0.5, "log": True},
    "hypergradient.K": {"type": "categorical", "choices": [1, 2, 5]},
    "inner.steps": {"type": "int", "low": 5, "high": 15, "step": 5},
}


def _search(**over):
    search = {"params": SPACE, "sampler": "tpe", "n_trials": 6, "max_concurrent": 2,
              "pruner": {"kind": "median"}, "seed": 7}  # fmt: skip
    search.update(over)
    return {"name": "tune", "base": tiny_spec(iterations=5, steps=10), "search": search}


def _problem(r, status):
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    return r.json()


def test_a_search_starts_with_max_concurrent_members_inside_its_space(client, auth, dispatcher):
    r = client.post("/v1/studies", json=_search(), headers=auth)
    assert r.status_code == 201, r.text
    study = r.json()
    assert study["kind"] == "search" and not study["search_done"]
    assert study["status"] == "queued" and study["group_by"] == []
    members = study["members"]
    assert [m["position"] for m in members] == [0, 1]
    assert [m["trial_state"] for m in members] == ["running", "running"]
    assert len(dispatcher.sent) == 2
    for m in members:
        v = m["values"]
        assert 1e-3 <= v["outer.lr"] <= 0.5 and v["hypergradient.K"] in (1, 2, 5)
        assert v["inner.steps"] in (5, 10, 15)
        job = client.get(f"/v1/jobs/{m['job_id']}", headers=auth).json()
        assert math.isclose(job["spec"]["outer"]["lr"], v["outer.lr"])
        assert job["spec"]["hypergradient"]["K"] == v["hypergradient.K"]
        assert job["spec"]["inner"]["steps"] == v["inner.steps"]


def _with_param(path, param):
    return _search(params={**SPACE, path: param})


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (_with_param("outer.lr", {"type": "float", "low": 0.5, "high": 0.5}),
         "search.params.outer.lr.high", "the range is empty"),
        (_with_param("outer.lr", {"type": "float", "low": 0.0, "high": 0.5, "log": True}),
         "search.params.outer.lr.low", "a log scale needs low > 0, got 0.0"),
        (_with_param("outer.lrr", {"type": "float", "low": 0.1, "high": 0.5}),
         "search.params.outer.lrr", "unknown spec path 'outer.lrr'"),
        (_search(sampler="annealing"), "search.sampler", "Input should be"),
        (_with_param("hypergradient.K", {"type": "categorical", "choices": [1, 50]}),
         "search.params.hypergradient.K", "value 50 is rejected"),
        (_search(n_trials=None), "search.n_trials", "give n_trials or a budget"),
        (_search(sampler="grid", params={k: SPACE[k] for k in ("hypergradient.K", "inner.steps")},
                 n_trials=10), "search.n_trials", "10 trials, more than the grid's 9 points"),
        (_search(sampler="grid"), "search.params.outer.lr", "the grid sampler needs int"),
        ({**_search(), "grid": {"seed": [0, 1]}}, "grid", "exactly one of grid"),
    ],
)  # fmt: skip
def test_a_bad_search_is_422_naming_the_field(client, auth, body, field, words):
    got = _problem(client.post("/v1/studies", json=body, headers=auth), 422)
    fields = [e["field"] for e in got["errors"]]
    assert field in fields, got
    assert words in got["errors"][fields.index(field)]["message"]
    assert client.get("/v1/studies", headers=auth).json()["count"] == 0


def test_a_multi_objective_search_reports_a_mutually_non_dominated_front(client, auth, pg_sessions):
    import uuid

    from jobs.status import JobStatus
    from jobs.store import repo
    from jobs.studies.search.trials import dominates

    body = _search(sampler="random", n_trials=5, max_concurrent=5, pruner=None,
                   objectives=[{"metric": "final_outer_loss"},
                               {"metric": "s_per_iteration"}])  # fmt: skip
    study = client.post("/v1/studies", json=body, headers=auth).json()
    assert len(study["members"]) == 5
    # (loss, seconds): 0, 1 and 3 trade off; 2 and 4 are each dominated
    points = [(1.0, 1.0), (2.0, 0.5), (2.5, 1.5), (0.5, 2.0), (1.0, 1.5)]
    for m, (loss, sec) in zip(study["members"], points):
        with pg_sessions.begin() as s:
            claim = repo.claim_job(s, uuid.UUID(m["job_id"]), "w:1", 60)
            assert repo.finish_job(
                s,
                claim,
                JobStatus.SUCCEEDED,
                iteration=5,
                summary={"final_outer_loss": loss, "s_per_iteration": sec},
            )
    got = client.get(f"/v1/studies/{study['id']}", headers=auth).json()
    assert sorted(got["best"]) == [0, 1, 3]
    front = [tuple(points[p]) for p in got["best"]]
    signs = [1.0, 1.0]
    assert not any(dominates(a, b, signs) for a in front for b in front)
    for p, point in enumerate(points):
        if p not in got["best"]:
            assert any(dominates(f, point, signs) for f in front)
    # the members say what they were told: ended, but the study's step has not run yet
    assert [m["status"] for m in got["members"]] == ["succeeded"] * 5


def test_the_example_search_is_admitted(client, auth):
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "studies" / "toy-search.json"
    r = client.post("/v1/studies", json=json.loads(path.read_text()), headers=auth)
    assert r.status_code == 201, r.text
    assert len(r.json()["members"]) == r.json()["search"]["max_concurrent"]
