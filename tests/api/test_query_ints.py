"""Integer query parameters are decimal digits: one rule (``api.params.Digits``) on all."""

from __future__ import annotations

import importlib
import pkgutil
import uuid
from typing import Any, get_args

import pytest
from fastapi.routing import APIRoute

import api.routes
from api.params import Digits

PROBLEM = "application/problem+json"


def _int_query_params() -> dict[tuple[str, str], list[Any]]:
    """Every route's integer query parameter, ``(path, name)``, with its validators."""
    found = {}
    for module in pkgutil.iter_modules(api.routes.__path__):
        router = getattr(importlib.import_module(f"api.routes.{module.name}"), "router", None)
        for route in getattr(router, "routes", ()):
            if not isinstance(route, APIRoute):
                continue
            for p in route.dependant.query_params:
                types = (p.field_info.annotation, *get_args(p.field_info.annotation))
                if int in types:
                    found[route.path, p.name] = p.field_info.metadata
    return found


def test_every_integer_query_parameter_follows_the_one_rule():
    ints = _int_query_params()
    # some that are there today: the check is not vacuous
    assert {("/v1/jobs", "limit"), ("/v1/jobs/{job_id}/trace", "after"),
            ("/v1/jobs/{job_id}/trace", "max_points")} <= ints.keys()  # fmt: skip
    assert [where for where, meta in ints.items() if Digits not in meta] == []


@pytest.mark.parametrize("value", ["+9", " 9", "9 ", "1_0", "9.0", "0x9", "٩"])
def test_a_number_not_written_in_digits_is_a_422_naming_the_parameter(client, auth, value):
    r = client.get("/v1/jobs", params={"limit": value}, headers=auth)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    (error,) = r.json()["errors"]
    assert error["field"] == "query.limit"
    assert repr(value) in error["message"]  # echoed


def test_a_plus_in_a_raw_url_is_refused_too(client, auth):
    # in a query string "+" is a space: ?limit=+9 reaches the route as " 9"
    r = client.get("/v1/jobs?limit=+9", headers=auth)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.limit"


def test_digits_pass_and_a_negative_is_refused_by_the_range_it_names(client, auth):
    assert client.get("/v1/jobs", params={"limit": "007"}, headers=auth).status_code == 200
    r = client.get("/v1/jobs", params={"limit": "-1"}, headers=auth)
    assert r.status_code == 422
    (error,) = r.json()["errors"]
    assert error["field"] == "query.limit" and "greater than or equal to 1" in error["message"]
    job = uuid.uuid4()
    r = client.get(f"/v1/jobs/{job}/trace", params={"after": "+1"}, headers=auth)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.after"


def test_the_rule_leaves_the_documented_bounds(client):
    # Digits after Query: the bounds stay the integer's (minimum/maximum in the OpenAPI)
    ints = _int_query_params()
    assert all(meta[-1] is Digits for meta in ints.values())
    params = client.get("/openapi.json").json()["paths"]["/v1/jobs"]["get"]["parameters"]
    (limit,) = [p for p in params if p["name"] == "limit"]
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 200)
