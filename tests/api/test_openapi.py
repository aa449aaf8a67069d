"""The served OpenAPI document: operation ids, a schema for every body, the status enum, and
the dashboard's statuses against that enum. No database: the document never touches it."""

from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy.orm import sessionmaker

from api import ApiSettings, create_app
from api.openapi import BINARY_SCHEMA, NPZ, OCTET_STREAM
from api.routes import (
    around,
    audit,
    dashboard,
    datasets,
    health,
    jobs,
    keys,
    learned,
    pool,
    problems,
    studies,
    webhooks,
)
from jobs.status import (
    TERMINAL,
    AuditAction,
    AuditTarget,
    DeliveryStatus,
    JobStatus,
    KeyScope,
    QueueKind,
)
from tests.api.conftest import RecordingDispatcher

STATUS_JS = dashboard.STATIC_DIR / "js" / "status.js"


@pytest.fixture(scope="module")
def app():
    settings = ApiSettings(database_url="postgresql://unbound", broker_url=None)
    return create_app(settings, dispatcher=RecordingDispatcher(), sessions=sessionmaker())


@pytest.fixture(scope="module")
def doc(app) -> dict:
    with TestClient(app) as c:
        return c.get("/openapi.json").json()


def _operations(doc: dict):
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            yield f"{method.upper()} {path}", op


def test_operation_ids_are_the_routes_tag_and_function_name(doc):
    expected = {
        f"{method} {route.path}": f"{route.tags[0]}-{route.name}"
        for router in (
            around.router,
            audit.router,
            health.router,
            jobs.router,
            learned.router,
            keys.router,
            pool.router,
            datasets.router,
            problems.router,
            studies.router,
            webhooks.router,
        )
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    }
    served = {name: op["operationId"] for name, op in _operations(doc)}
    assert served == expected
    assert served["POST /v1/jobs"] == "jobs-submit_job"
    assert served["GET /v1/jobs/{job_id}/hparams"] == "jobs-get_hparams"
    assert served["POST /v1/datasets"] == "datasets-upload_dataset"


def test_a_dataset_upload_is_a_binary_body(doc):
    body = doc["paths"]["/v1/datasets"]["post"]["requestBody"]
    assert body["content"] == {"application/octet-stream": {"schema": BINARY_SCHEMA}}


def test_every_response_with_a_body_documents_its_schema(doc):
    for name, op in _operations(doc):
        for code, resp in op["responses"].items():
            if code == "304":
                # a revalidation has no body by definition (RFC 9110 15.4.5)
                assert "content" not in resp, (name, code)
                continue
            assert resp.get("content"), (name, code)
            for media, body in resp["content"].items():
                assert body.get("schema"), (name, code, media)


def test_errors_are_documented_as_problem_json_only(doc):
    for name, op in _operations(doc):
        for code, resp in op["responses"].items():
            if code[0] in "45":
                assert list(resp["content"]) == ["application/problem+json"], (name, code)
                schema = resp["content"]["application/problem+json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Problem"}, (name, code)


def test_hparams_is_a_binary_npz_file_also_offered_as_raw_bytes(doc):
    ok = doc["paths"]["/v1/jobs/{job_id}/hparams"]["get"]["responses"]["200"]
    # its own type first; raw bytes too, the one binary type generators know
    assert list(ok["content"]) == [NPZ, OCTET_STREAM]
    assert all(body == {"schema": BINARY_SCHEMA} for body in ok["content"].values())
    assert BINARY_SCHEMA == {"type": "string", "format": "binary"}
    assert OCTET_STREAM == "application/octet-stream"


def test_job_statuses_are_one_enum_in_the_schemas_and_the_list_filter(doc):
    schemas = doc["components"]["schemas"]
    assert schemas["JobStatus"]["enum"] == [s.value for s in JobStatus]
    ref = {"$ref": "#/components/schemas/JobStatus"}
    assert schemas["JobPublic"]["properties"]["status"] == ref
    assert schemas["JobResult"]["properties"]["status"] == ref
    (param,) = [p for p in doc["paths"]["/v1/jobs"]["get"]["parameters"] if p["name"] == "status"]
    assert ref in param["schema"]["anyOf"]


#: Each state enum (jobs.status) and the (schema, property) fields typed with it.
STATE_FIELDS = {
    KeyScope: [("KeyPublic", "scope"), ("KeyCreate", "scope")],
    QueueKind: [("JobPublic", "queue"), ("WorkerPublic", "queue"), ("QueuedPublic", "queue")],
    DeliveryStatus: [("DeliveryPublic", "status")],
    AuditAction: [("AuditEventPublic", "action")],
    AuditTarget: [("AuditEventPublic", "target_type")],
}


@pytest.mark.parametrize("enum", list(STATE_FIELDS), ids=lambda e: e.__name__)
def test_each_state_is_its_enum_once_in_the_schemas(doc, enum):
    schemas = doc["components"]["schemas"]
    assert schemas[enum.__name__]["enum"] == [m.value for m in enum]
    ref = f"#/components/schemas/{enum.__name__}"
    for schema, field in STATE_FIELDS[enum]:
        assert schemas[schema]["properties"][field]["$ref"] == ref, (schema, field)
    # no schema spells the values out again
    spelled = [name for name, s in schemas.items()
               if name != enum.__name__ and s.get("enum") == [m.value for m in enum]]  # fmt: skip
    assert spelled == []


def test_the_audit_filter_is_the_action_enum(doc):
    params = doc["paths"]["/v1/audit"]["get"]["parameters"]
    (action,) = [p for p in params if p["name"] == "action"]
    assert {"$ref": "#/components/schemas/AuditAction"} in action["schema"]["anyOf"]


def test_the_dashboards_status_module_lists_the_served_enum(doc):
    src = STATUS_JS.read_text()
    body = re.search(r"export const Status = Object\.freeze\(\{(.*?)\}\);", src, re.S)
    assert body, "status.js exports no frozen Status object"
    names = dict(re.findall(r"(\w+):\s*\"([a-z_]+)\"", body.group(1)))
    assert names == {s.name: s.value for s in JobStatus}
    # in the enum's order: the list's filter offers them in a job's life order
    assert list(names.values()) == doc["components"]["schemas"]["JobStatus"]["enum"]
    terminal = re.search(r"export const TERMINAL = new Set\(\[(.*?)\]\);", src, re.S)
    assert terminal, "status.js exports no TERMINAL set"
    assert set(re.findall(r"Status\.(\w+)", terminal.group(1))) == {s.name for s in TERMINAL}


def test_no_other_dashboard_module_spells_a_status():
    quoted = re.compile("|".join(rf"[\"'`]{s.value}[\"'`]" for s in JobStatus))
    for js in (dashboard.STATIC_DIR / "js").glob("*.js"):
        if js != STATUS_JS:
            assert not quoted.search(js.read_text()), js.name
