"""``/v1/problems`` and plugin kinds over REST: the installed example plugin is listed with
its schema, package and version; its options are validated; its jobs record the plugin."""

from __future__ import annotations

from importlib.metadata import version

from api.errors import PROBLEM_JSON
from tests.factories import tiny_spec

PLUGIN = {"package": "bilevel-digits-mlp", "version": version("bilevel-digits-mlp")}


def _plugin_spec(**options) -> dict:
    return tiny_spec(problem={"kind": "digits_mlp", **options})


def test_the_example_plugin_is_listed_with_its_schema_package_and_version(client, auth):
    body = client.get("/v1/problems", headers=auth).json()
    kinds = {p["kind"]: p for p in body["data"]}
    plugin = kinds["digits_mlp"]
    assert {k: plugin[k] for k in ("source", "package", "version")} == {"source": "plugin",
                                                                        **PLUGIN}  # fmt: skip
    schema = plugin["json_schema"]
    assert schema["properties"]["kind"]["const"] == "digits_mlp"
    assert schema["properties"]["hidden"]["minimum"] == 1
    assert schema["additionalProperties"] is False
    assert "per input pixel" in plugin["description"]
    toy = kinds["toy"]
    assert (toy["source"], toy["package"], toy["version"]) == ("builtin", None, None)


def test_an_invalid_plugin_option_is_a_422_naming_the_field(client, auth, dispatcher):
    r = client.post("/v1/jobs", json=_plugin_spec(hidden=0), headers=auth)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith(PROBLEM_JSON)
    body = r.json()
    assert [e["field"] for e in body["errors"]] == ["problem.hidden"]
    assert "problem.hidden" in body["detail"]
    assert dispatcher.sent == []


def test_an_unknown_kind_is_a_422_listing_the_known_kinds(client, auth):
    r = client.post("/v1/jobs", json=tiny_spec(problem={"kind": "nope"}), headers=auth)
    assert r.status_code == 422, r.text
    (error,) = r.json()["errors"]
    assert error["field"] == "problem.kind"
    assert "'digits_mlp'" in error["message"]
    assert "'quadratic'" in error["message"]


def test_a_plugin_job_records_the_package_and_version_it_was_submitted_with(client, auth):
    r = client.post("/v1/jobs", json=_plugin_spec(hidden=4), headers=auth)
    assert r.status_code == 201, r.text
    assert r.json()["plugin"] == PLUGIN
    job = client.get(f"/v1/jobs/{r.json()['id']}", headers=auth).json()
    assert job["plugin"] == PLUGIN
    assert job["spec"]["problem"] == {"kind": "digits_mlp", "dataset": None, "hidden": 4,
                                      "n_train": 300, "n_val": 300,
                                      "init_penalty": 0.001}  # fmt: skip
    builtin = client.post("/v1/jobs", json=tiny_spec(), headers=auth).json()
    assert builtin["plugin"] is None
