"""A retried create is recognised by the body the client sent, across releases.

The store keeps, with each keyed job and study, the SHA-256 of the body in canonical JSON
(``jobs.store.repo.request_digest``). A retry whose body has that digest is the same request
even where the release that reads it normalises the spec differently (a field added with a
default, a default changed); rows written before the digest existed are compared by their
normal form, read by this release.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import update

from jobs.store import repo
from jobs.store.models import Job, Study
from tests.factories import tiny_spec

PROBLEM = "application/problem+json"


def _post(client, path: str, body: Any, auth, key: str, *, raw: str | None = None):
    headers = {**auth, "Idempotency-Key": key, "Content-Type": "application/json"}
    return client.post(path, content=raw or json.dumps(body), headers=headers)


def _as_stored_by(pg_sessions, job_id: str, *, digest: str | None, **spec_change: Any) -> None:
    """Rewrite the job's row as another release would have stored it: ``spec_change`` maps
    ``"section.field"`` to a value (``...`` drops the field), ``digest`` the column."""
    with pg_sessions.begin() as s:
        job = s.get(Job, uuid.UUID(job_id))
        assert job is not None
        spec = json.loads(json.dumps(job.spec))
        for path, value in spec_change.items():
            section, field = path.split(".")
            if value is ...:
                del spec[section][field]
            else:
                spec[section][field] = value
        s.execute(update(Job).where(Job.id == job.id).values(spec=spec, request_sha256=digest))


def _replayed(r, first) -> None:
    assert r.status_code == 201, r.text
    assert r.headers["idempotent-replayed"] == "true"
    assert r.json()["id"] == first.json()["id"]


def test_the_same_body_in_another_key_order_and_spacing_is_the_same_request(
    client, auth, dispatcher
):
    spec = tiny_spec()
    first = _post(client, "/v1/jobs", spec, auth, "order-1")
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    reordered = json.dumps(dict(reversed(list(spec.items()))), indent=3)
    _replayed(_post(client, "/v1/jobs", None, auth, "order-1", raw=reordered), first)
    assert len(dispatcher.sent) == 1  # the replay sends nothing


def test_another_body_with_the_key_is_a_409_naming_the_key_and_the_job(client, auth):
    first = _post(client, "/v1/jobs", tiny_spec(), auth, "conflict-1")
    r = _post(client, "/v1/jobs", tiny_spec(iterations=3), auth, "conflict-1")
    assert r.status_code == 409 and r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["type"].endswith("idempotency-conflict")
    assert "'conflict-1'" in body["detail"] and first.json()["id"] in body["detail"]


def test_a_retry_matches_its_digest_where_the_stored_normal_form_differs(client, auth, pg_sessions):
    # the row as this release stores it, read by a later release whose normal form of the
    # same body differs: the stored spec is not what this release makes of the body
    spec = tiny_spec()
    first = _post(client, "/v1/jobs", spec, auth, "digest-1")
    digest = repo.request_digest(spec)
    _as_stored_by(pg_sessions, first.json()["id"], digest=digest,
                  **{"hypergradient.compile": False, "outer.batch_size": ...})  # fmt: skip
    _replayed(_post(client, "/v1/jobs", spec, auth, "digest-1"), first)
    # the digest is of the body: another body with the key still conflicts
    assert _post(client, "/v1/jobs", tiny_spec(seed=1), auth, "digest-1").status_code == 409


def test_a_row_without_a_digest_matches_a_retry_of_equal_normal_form(client, auth, pg_sessions):
    # the previous release stored no digest, and its normal form lacked a field added since
    # with a default: read by this release, the stored spec is this body's normal form
    spec = tiny_spec()
    first = _post(client, "/v1/jobs", spec, auth, "old-row-1")
    _as_stored_by(pg_sessions, first.json()["id"], digest=None, **{"outer.batch_size": ...})
    _replayed(_post(client, "/v1/jobs", spec, auth, "old-row-1"), first)
    # a body spelled differently that means the same (the default written out) matches too
    explicit = {**spec, "hypergradient": {**spec["hypergradient"], "compile": "auto"}}
    _replayed(_post(client, "/v1/jobs", explicit, auth, "old-row-1"), first)
    assert _post(client, "/v1/jobs", tiny_spec(seed=1), auth, "old-row-1").status_code == 409


def test_a_row_without_a_digest_whose_default_changed_since_is_a_conflict(
    client, auth, pg_sessions
):
    # the one case left (docs/guides/operating.md): a default that changed between releases
    # is stored as the old value, which this release cannot tell from one the client sent
    spec = tiny_spec()
    first = _post(client, "/v1/jobs", spec, auth, "old-row-2")
    _as_stored_by(pg_sessions, first.json()["id"], digest=None, **{"hypergradient.compile": False})
    assert _post(client, "/v1/jobs", spec, auth, "old-row-2").status_code == 409


def test_a_study_create_retried_in_another_key_order_is_replayed(client, auth, pg_sessions):
    body = {"name": "digest sweep", "base": tiny_spec(iterations=5),
            "grid": {"seed": [0, 1]}}  # fmt: skip
    first = _post(client, "/v1/studies", body, auth, "study-digest-1")
    assert first.status_code == 201, first.text
    with pg_sessions() as s:
        study = s.get(Study, uuid.UUID(first.json()["id"]))
        assert study is not None and study.request_sha256 == repo.request_digest(body)
    raw = json.dumps({"grid": body["grid"], "base": body["base"], "name": body["name"]})
    _replayed(_post(client, "/v1/studies", None, auth, "study-digest-1", raw=raw), first)
    other = {**body, "grid": {"seed": [0, 2]}}
    assert _post(client, "/v1/studies", other, auth, "study-digest-1").status_code == 409
