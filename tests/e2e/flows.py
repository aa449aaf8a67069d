"""The acceptance flow, shared by the distributed and the embedded integration tests."""

from __future__ import annotations

import io
import time

import numpy as np

from tests.factories import tiny_spec

TERMINAL = {"succeeded", "failed", "cancelled"}


def wait_for(client, job_id, headers, until, timeout=60.0, poll=0.02):
    """Poll the job until ``until(job)``; return it and every status seen, in order."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
        if not seen or seen[-1] != job["status"]:
            seen.append(job["status"])
        if until(job):
            return job, seen
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; last {job['status']} {job['progress']}")
        time.sleep(poll)


def submit_run_and_download(client, headers, iterations=60):
    r = client.post("/v1/jobs", json=tiny_spec(iterations=iterations), headers=headers)
    assert r.status_code == 201 and r.json()["status"] == "queued"
    job_id = r.json()["id"]
    job, seen = wait_for(client, job_id, headers, lambda j: j["status"] in TERMINAL)
    assert job["status"] == "succeeded", job
    assert seen[-2:] == ["running", "succeeded"] and set(seen) <= {"queued", "running", "succeeded"}
    assert job["progress"]["fraction"] == 1.0 and job["attempts"] == 1
    trace = client.get(f"/v1/jobs/{job_id}/trace", headers=headers).json()
    assert trace["iteration"] == list(range(1, iterations + 1))
    result = client.get(f"/v1/jobs/{job_id}/result", headers=headers).json()
    assert result["best_outer_loss"] == min(trace["outer_loss"])
    r = client.get(f"/v1/jobs/{job_id}/hparams", headers=headers)
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-npz"
    with np.load(io.BytesIO(r.content)) as z:
        assert np.allclose(z["hparams"], result["hparams"])
    return job_id


def cancel_a_running_job(client, headers):
    spec = tiny_spec(iterations=100_000)
    job_id = client.post("/v1/jobs", json=spec, headers=headers).json()["id"]
    wait_for(client, job_id, headers, lambda j: j["progress"]["iteration"] >= 3)
    r = client.post(f"/v1/jobs/{job_id}/cancel", headers=headers)
    assert r.status_code == 202
    job, _ = wait_for(client, job_id, headers, lambda j: j["status"] in TERMINAL, timeout=20)
    assert job["status"] == "cancelled" and job["progress"]["iteration"] < 100_000
    trace = client.get(f"/v1/jobs/{job_id}/trace", headers=headers).json()
    assert trace["iteration"] == list(range(1, job["progress"]["iteration"] + 1))


def errors_are_problems(client, headers, other_headers):
    spec = tiny_spec(steps=10)
    spec["hypergradient"]["K"] = 11
    r = client.post("/v1/jobs", json=spec, headers=headers)
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in r.json()["errors"]] == ["hypergradient.K"]
    r = client.post("/v1/jobs", json=tiny_spec())
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
    job_id = client.post("/v1/jobs", json=tiny_spec(iterations=2), headers=headers).json()["id"]
    r = client.get(f"/v1/jobs/{job_id}", headers=other_headers)
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"


def plugin_job_runs(client, headers, iterations=8):
    """A job of the example plugin's kind runs to the end and records the plugin package.

    The trace is the one the same spec gives built in this process, loss for loss.
    """
    from importlib.metadata import version

    import core
    from jobs import parse_spec
    from worker.build import build

    plugin = {"package": "bilevel-digits-mlp", "version": version("bilevel-digits-mlp")}
    spec = tiny_spec(iterations=iterations, problem={"kind": "digits_mlp", "hidden": 8})
    r = client.post("/v1/jobs", json=spec, headers=headers)
    assert r.status_code == 201, r.text
    job, _ = wait_for(client, r.json()["id"], headers, lambda j: j["status"] in TERMINAL)
    assert job["status"] == "succeeded", job
    assert job["plugin"] == plugin
    assert job["summary"]["plugin"] == plugin  # the version that ran on the worker
    trace = client.get(f"/v1/jobs/{job['id']}/trace", headers=headers).json()
    assert trace["iteration"] == list(range(1, iterations + 1))
    built = build(parse_spec(spec))
    ref = core.fit(built.problem, built.hparams, built.dynamics, built.estimator,
                   **built.fit_kwargs)  # fmt: skip
    assert trace["outer_loss"] == ref.history["outer_loss"]
    result = client.get(f"/v1/jobs/{job['id']}/result", headers=headers).json()
    assert set(result["metrics"]) == {"val_accuracy", "test_accuracy"}
