"""One admission: ``POST /v1/jobs`` and every member of ``POST /v1/studies`` agree.

A property test draws specs that are fine or wrong in each way admission knows (cross-field
rules, a missing or unfit data set, a plugin's data set option, the compute budget) and
checks that the job route and the study route accept and refuse the same ones, naming the
same fields (``base.<path>`` in a study).
"""

from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.dataset_files import digits_arrays, npz_bytes
from tests.factories import example, tiny_spec

MISSING = "00000000-0000-4000-8000-000000000000"
OCTET = {"Content-Type": "application/octet-stream"}


@pytest.fixture
def api(make_client):
    # every admitted draw queues two jobs: the quota is not what is tested here
    return make_client(max_queued_jobs=100_000, max_graph_bytes=64 << 20)


@pytest.fixture
def digits_id(api, auth):
    r = api.post("/v1/datasets", params={"name": "digits"}, content=npz_bytes(digits_arrays()),
                 headers={**auth, **OCTET})  # fmt: skip
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _problem(draw, digits_id: str) -> dict:
    ref = st.sampled_from([digits_id, MISSING, "diabetes", "breast_cancer", "digits"])
    kind = draw(st.sampled_from(["toy", "feature_regularization", "task_interaction",
                                 "quadratic", "hypercleaning", "digits_mlp"]))  # fmt: skip
    if kind == "feature_regularization":
        model = draw(st.sampled_from([None, "linear", "logistic", "softmax"]))
        per = draw(st.sampled_from(["feature", "group"]))
        return {"kind": kind, "dataset": draw(ref), "model": model, "per": per}
    if kind == "task_interaction":
        n_tasks = draw(st.sampled_from([None, 2, 11]))
        return {"kind": kind, "dataset": draw(ref), "n_tasks": n_tasks}
    if kind == "quadratic":
        return {"kind": kind, "mu": draw(st.sampled_from([0.1, 2.0])), "L": 1.0}
    if kind == "hypercleaning":
        dataset = draw(st.sampled_from(["digits", digits_id, MISSING]))
        return {"kind": kind, "dataset": dataset, "n_train": draw(st.sampled_from([None, 100]))}
    if kind == "digits_mlp":
        dataset = draw(st.sampled_from([None, digits_id, MISSING]))
        return {"kind": kind, "dataset": dataset, "hidden": draw(st.sampled_from([4, 256]))}
    return copy.deepcopy(example("toy")["problem"])


@st.composite
def specs(draw, digits_id: str) -> dict:
    spec = tiny_spec(iterations=draw(st.sampled_from([2, 10**8])), steps=10)
    spec["problem"] = {k: v for k, v in _problem(draw, digits_id).items() if v is not None}
    spec["hypergradient"] = draw(st.sampled_from(
        [{"method": "truncated", "K": 3}, {"method": "truncated", "K": 50}, {"method": "full"}]
    ))  # fmt: skip
    spec["inner"]["batch_size"] = draw(st.sampled_from([None, 8]))
    spec["diagnostics"]["every"] = 0
    return spec


def _fields(r) -> list[str]:
    return sorted({e["field"].removeprefix("base.") for e in r.json().get("errors", [])})


def test_the_job_and_study_routes_admit_the_same_specs_naming_the_same_fields(api, auth, digits_id):
    seen: set[tuple[int, tuple[str, ...]]] = set()

    @settings(max_examples=60, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
    @given(specs(digits_id))
    def check(spec):
        job = api.post("/v1/jobs", json=spec, headers=auth)
        study = api.post("/v1/studies", json={"name": "one", "base": spec,
                                              "grid": {"seed": [0]}}, headers=auth)  # fmt: skip
        assert job.status_code in (201, 422), job.text
        assert study.status_code == job.status_code, (spec, job.text, study.text)
        assert _fields(study) == _fields(job), (spec, job.text, study.text)
        seen.add((job.status_code, tuple(_fields(job))))

    check()
    # the draws reached both outcomes and refusals of each stage (data set, fit, budget)
    refused = {f for status, fields in seen if status == 422 for f in fields}
    assert any(status == 201 for status, _ in seen)
    assert {"problem.dataset", "problem.model", "inner.batch_size"} <= refused
    assert {"outer.iterations"} <= refused


def test_a_study_whose_base_names_a_missing_data_set_is_422_at_base(api, auth):
    base = example("feature_regularization")
    base["problem"]["dataset"] = MISSING
    r = api.post("/v1/studies", json={"name": "s", "base": base, "grid": {"seed": [0, 1]}},
                 headers=auth)  # fmt: skip
    assert r.status_code == 422, r.text
    (error,) = r.json()["errors"]  # reported once, not once per member
    assert error["field"] == "base.problem.dataset"
    assert error["message"] == f"no dataset {MISSING} for this team (GET /v1/datasets)"
    assert api.get("/v1/jobs", headers=auth).json()["count"] == 0


def test_a_grid_over_data_sets_names_the_missing_one_at_its_path(api, auth, digits_id):
    base = example("mlp")
    grid = {"problem.dataset": [digits_id, MISSING]}
    r = api.post("/v1/studies", json={"name": "s", "base": base, "grid": grid}, headers=auth)
    assert r.status_code == 422, r.text
    (error,) = r.json()["errors"]
    assert error["field"] == "grid.problem.dataset"
    assert error["message"] == (
        f"value '{MISSING}' is rejected: no dataset {MISSING} for this team (GET /v1/datasets)"
    )


def test_a_grid_over_a_data_set_without_what_the_kind_needs_is_422(api, auth, digits_id):
    base = example("task_interaction")
    r = api.post("/v1/studies", json={"name": "s", "base": base,
                                      "grid": {"problem.dataset": ["diabetes", digits_id]}},
                 headers=auth)  # fmt: skip
    assert r.status_code == 422, r.text
    (error,) = r.json()["errors"]
    assert error["field"] == "grid.problem.dataset"
    assert "task_interaction needs a task column" in error["message"]


def test_a_study_member_over_the_budget_is_422_naming_the_swept_path(make_client, auth):
    api = make_client(max_graph_bytes=1 << 20)
    base = example("hypercleaning")
    base["diagnostics"]["every"] = 0
    grid = {"hypergradient.K": [1, 100]}
    r = api.post("/v1/studies", json={"name": "s", "base": base, "grid": grid}, headers=auth)
    assert r.status_code == 422, r.text
    (error,) = r.json()["errors"]
    assert error["field"] == "grid.hypergradient.K"
    assert error["message"].startswith("value 100 is rejected: hypergradient.method=truncated")


def test_a_plugin_kind_naming_a_missing_data_set_is_422(api, auth):
    spec = tiny_spec(problem={"kind": "digits_mlp", "dataset": MISSING})
    r = api.post("/v1/jobs", json=spec, headers=auth)
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["problem.dataset"]
