"""The client's light models hold the same fields as the server's schemas (OpenAPI)."""

from __future__ import annotations

import inspect

import pytest

from client import models

MODELS = [
    m
    for _, m in inspect.getmembers(models, inspect.isclass)
    if issubclass(m, models._Model) and m is not models._Model
]


@pytest.fixture
def schemas(app):
    return app.openapi()["components"]["schemas"]


def test_every_model_of_the_client_is_checked():
    assert {m.__name__ for m in MODELS} == set(models.__all__)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_a_client_model_has_the_fields_of_its_server_schema(model, schemas):
    schema = schemas[model.schema_name]
    assert set(model.model_fields) == set(schema["properties"])
    required = {n for n, f in model.model_fields.items() if f.is_required()}
    assert required == set(schema.get("required", []))
