"""``GET /v1/jobs/{id}/learned``: the worker's summary as stored, only for a succeeded job."""

from __future__ import annotations

import json
import uuid

from jobs.specs.job import parse_spec
from jobs.status import JobStatus
from jobs.store import repo
from tests.factories import bearer, example, team_with_key
from worker.build import build
from worker.learned import HparamsPath, summarise

PROBLEM = "application/problem+json"


def _learned() -> dict:
    spec = parse_spec(example("feature_regularization"))
    built = build(spec)
    path = HparamsPath()
    for it in (1, 2):
        path.add(it, built.hparams)
    return summarise(spec, built.problem, built.dynamics, built.hparams, path)


def test_a_succeeded_job_answers_its_summary_and_others_409_or_404(client, auth, pg_sessions):
    spec = example("feature_regularization")
    job_id = client.post("/v1/jobs", json=spec, headers=auth).json()["id"]
    r = client.get(f"/v1/jobs/{job_id}/learned", headers=auth)
    assert r.status_code == 409 and r.headers["content-type"].startswith(PROBLEM)
    assert r.json()["detail"] == f"job {job_id} is queued: no summary of what it learned"
    learned = _learned()
    with pg_sessions.begin() as s:
        claim = repo.claim_job(s, uuid.UUID(job_id), "w:1", 60)
    with pg_sessions.begin() as s:
        repo.save_artifact(s, claim.job_id, "learned", json.dumps(learned).encode())
        assert repo.finish_job(s, claim, JobStatus.SUCCEEDED, summary={})
    r = client.get(f"/v1/jobs/{job_id}/learned", headers=auth)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["penalties"] == learned["penalties"] and body["paths"] == learned["paths"]
    assert body["kind"] == "feature_regularization" and body["example_weights"] is None
    _, other = team_with_key(pg_sessions)
    assert client.get(f"/v1/jobs/{job_id}/learned", headers=bearer(other)).status_code == 404
