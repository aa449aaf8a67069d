"""``/v1/datasets`` and ``/v1/problems`` on the real PostgreSQL: uploads, refusals, isolation."""

from __future__ import annotations

import hashlib
import math
import random

import numpy as np
import pytest
from sqlalchemy import func, select

from jobs.store.models import DatasetBlob, DatasetChunk
from tests.dataset_files import digits_arrays, npz_bytes, safetensors_bytes
from tests.factories import example
from tests.jobs.test_dataset_checks import CASES, _broken

OCTET = {"Content-Type": "application/octet-stream"}


def _upload(client, auth, data, name="digits"):
    return client.post("/v1/datasets", params={"name": name}, content=data,
                       headers={**auth, **OCTET})  # fmt: skip


def _spec(dataset_id, kind="feature_regularization"):
    spec = example(kind)
    spec["problem"]["dataset"] = dataset_id
    spec["problem"].pop("model", None)
    spec["outer"]["iterations"] = 3
    if "batch_size" in spec["inner"]:  # within the training rows of the data sets used here
        spec["inner"]["batch_size"] = min(spec["inner"]["batch_size"], 64)
    return spec


def _stored_blobs(pg_sessions, sha):
    with pg_sessions() as s:
        blobs = s.scalar(select(func.count()).select_from(DatasetBlob).where(
            DatasetBlob.sha256 == sha))  # fmt: skip
        chunks = s.scalar(select(func.count()).select_from(DatasetChunk).where(
            DatasetChunk.sha256 == sha))  # fmt: skip
    return blobs, chunks


@pytest.fixture
def small():
    # a split of its own: the store is shared by the session's tests, and equal files
    # share one blob (content addressing), which would blur what each test counts
    return npz_bytes(digits_arrays(n_train=100, n_val=50, seed=random.randrange(1 << 30)))


def test_upload_answers_the_id_sha256_and_each_array(client, auth, small):
    r = _upload(client, auth, small)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["sha256"] == hashlib.sha256(small).hexdigest()
    assert body["size"] == len(small) and body["format"] == "npz"
    assert body["task"] == "classification" and body["n_classes"] == 10
    assert {a["name"]: a["shape"] for a in body["arrays"]}["x_train"] == [100, 64]
    assert r.headers["location"] == f"/v1/datasets/{body['id']}"
    listed = client.get("/v1/datasets", headers=auth).json()
    assert [d["id"] for d in listed["data"]] == [body["id"]]
    assert listed["bytes_used"] == len(small)
    got = client.get(f"/v1/datasets/{body['id']}", headers=auth).json()
    assert got["used_by"] == [] and got["sha256"] == body["sha256"]


def test_the_bytes_are_stored_in_chunks_that_reassemble_the_file(pg_sessions, tmp_path):
    from jobs.datasets.checks import describe_file
    from jobs.store import repo
    from tests.factories import team_with_key

    data = npz_bytes(digits_arrays(seed=random.randrange(1 << 30)))
    path = tmp_path / "d.npz"
    path.write_bytes(data)
    desc = describe_file(path).__dict__
    sha = hashlib.sha256(data).hexdigest()
    team_id, _ = team_with_key(pg_sessions)
    with pg_sessions.begin() as s:
        repo.store_dataset(s, team_id, name="d", path=path, sha256=sha, size=len(data),
                           fmt="npz", description=desc, chunk_bytes=100_000)  # fmt: skip
    with pg_sessions() as s:
        assert b"".join(repo.read_dataset_chunks(s, sha)) == data
    assert _stored_blobs(pg_sessions, sha) == (1, math.ceil(len(data) / 100_000))


def test_a_safetensors_upload_is_described_like_the_npz(client, auth):
    arrays = digits_arrays(n_train=100, n_val=50, seed=random.randrange(1 << 30))
    a = _upload(client, auth, npz_bytes(arrays)).json()
    b = _upload(client, auth, safetensors_bytes(arrays)).json()
    assert b["format"] == "safetensors"
    assert {x["name"]: x["shape"] for x in a["arrays"]} == {
        x["name"]: x["shape"] for x in b["arrays"]
    }
    assert (a["task"], a["n_classes"], a["rows"]) == (b["task"], b["n_classes"], b["rows"])


@pytest.mark.parametrize("case", ["pickled", "nan", "mismatched_rows", "missing_split",
                                  "label_out_of_range"])  # fmt: skip
def test_a_bad_upload_is_a_problem_naming_the_array_and_leaves_nothing(
    client, auth, pg_sessions, case
):
    data = npz_bytes(_broken(case))  # refused: never stored, so no other test shares it
    r = _upload(client, auth, data)
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    array = CASES[case][0]
    assert r.json()["array"] == array and array in r.json()["detail"]
    assert r.json()["errors"][0]["field"] == f"file.{array}"
    assert client.get("/v1/datasets", headers=auth).json()["count"] == 0
    assert _stored_blobs(pg_sessions, hashlib.sha256(data).hexdigest()) == (0, 0)


def test_a_truncated_upload_is_refused_and_leaves_nothing(client, auth, small, pg_sessions):
    data = small[: len(small) // 2]
    r = _upload(client, auth, data)
    assert r.status_code == 422 and "truncated" in r.json()["detail"]
    assert client.get("/v1/datasets", headers=auth).json()["count"] == 0
    assert _stored_blobs(pg_sessions, hashlib.sha256(data).hexdigest()) == (0, 0)


def test_a_file_over_the_upload_limit_is_413_naming_it(make_client, auth, small):
    client = make_client(max_upload_bytes=4096)
    r = _upload(client, auth, small)  # Content-Length declared: refused before reading
    assert r.status_code == 413 and "max_upload_bytes" in r.json()["detail"]

    def chunks():  # no Content-Length: counted as it streams
        for i in range(0, len(small), 1000):
            yield small[i : i + 1000]

    r = _upload(client, auth, chunks())
    assert r.status_code == 413 and "max_upload_bytes" in r.json()["detail"]
    assert client.get("/v1/datasets", headers=auth).json()["count"] == 0


def test_the_upload_limit_is_separate_from_the_json_body_limit(make_client, auth, small):
    client = make_client(max_body_bytes=2048)
    assert _upload(client, auth, small).status_code == 201  # far over 2048 bytes
    r = client.post("/v1/jobs", content=b"{" + b" " * 4096 + b"}", headers=auth)
    assert r.status_code == 413 and "max_body_bytes" in r.json()["detail"]


def test_the_team_quota_is_413_naming_it(make_client, auth, small):
    client = make_client(dataset_quota_bytes=len(small) + 100)
    assert _upload(client, auth, small).status_code == 201
    r = _upload(client, auth, small, name="again")
    assert r.status_code == 413 and r.json()["setting"] == "dataset_quota_bytes"
    assert client.get("/v1/datasets", headers=auth).json()["count"] == 1


def test_a_retried_upload_with_the_same_idempotency_key_makes_one_data_set(
    make_client, auth, small
):
    # room for one copy: a second data set would be over quota, a replay is not
    client = make_client(dataset_quota_bytes=len(small) + 100)
    h = {**auth, **OCTET, "Idempotency-Key": "upload-retry-1"}

    def post(data, name="digits"):
        return client.post("/v1/datasets", params={"name": name}, content=data, headers=h)

    a, b = post(small), post(small)
    assert a.status_code == b.status_code == 201, b.text
    assert b.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in a.headers
    assert b.json() == a.json() and b.headers["location"] == a.headers["location"]
    listed = client.get("/v1/datasets", headers=auth).json()
    assert [d["id"] for d in listed["data"]] == [a.json()["id"]]
    # the same key with another name or another file is a conflict, not a second data set
    other = npz_bytes(digits_arrays(n_train=100, n_val=50, seed=random.randrange(1 << 30)))
    for r in (post(small, name="renamed"), post(other)):
        body = r.json()
        assert r.status_code == 409, r.text
        assert body["type"].endswith("idempotency-conflict") and a.json()["id"] in body["detail"]
    assert client.get("/v1/datasets", headers=auth).json()["count"] == 1


def test_another_team_gets_404_and_its_spec_naming_the_dataset_422(client, auth, other_auth, small):
    dataset_id = _upload(client, auth, small).json()["id"]
    assert client.get(f"/v1/datasets/{dataset_id}", headers=other_auth).status_code == 404
    assert client.delete(f"/v1/datasets/{dataset_id}", headers=other_auth).status_code == 404
    assert client.get("/v1/datasets", headers=other_auth).json()["count"] == 0
    r = client.post("/v1/jobs", json=_spec(dataset_id), headers=other_auth)
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["problem.dataset"]
    assert client.post("/v1/jobs", json=_spec(dataset_id), headers=auth).status_code == 201


def test_a_model_that_does_not_fit_the_dataset_is_422_at_the_model(client, auth, small):
    dataset_id = _upload(client, auth, small).json()["id"]
    spec = _spec(dataset_id)
    spec["problem"]["model"] = "linear"  # digits are classes, not a regression target
    r = client.post("/v1/jobs", json=spec, headers=auth)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "problem.model"


def test_delete_is_409_while_a_queued_job_uses_the_dataset(client, auth, small, pg_sessions):
    body = _upload(client, auth, small).json()
    job_id = client.post("/v1/jobs", json=_spec(body["id"], "mlp"), headers=auth).json()["id"]
    assert client.get(f"/v1/datasets/{body['id']}", headers=auth).json()["used_by"] == [job_id]
    r = client.delete(f"/v1/datasets/{body['id']}", headers=auth)
    assert r.status_code == 409 and job_id in r.json()["detail"]
    assert client.post(f"/v1/jobs/{job_id}/cancel", headers=auth).status_code == 202
    assert client.delete(f"/v1/datasets/{body['id']}", headers=auth).status_code == 200
    assert client.get(f"/v1/datasets/{body['id']}", headers=auth).status_code == 404
    assert _stored_blobs(pg_sessions, body["sha256"]) == (0, 0)


def test_equal_files_share_one_blob_until_the_last_goes(client, auth, small, pg_sessions):
    a = _upload(client, auth, small, name="a").json()
    b = _upload(client, auth, small, name="b").json()
    assert a["sha256"] == b["sha256"] and a["id"] != b["id"]
    assert client.delete(f"/v1/datasets/{a['id']}", headers=auth).status_code == 200
    assert _stored_blobs(pg_sessions, a["sha256"])[0] == 1
    assert client.delete(f"/v1/datasets/{b['id']}", headers=auth).status_code == 200
    assert _stored_blobs(pg_sessions, a["sha256"]) == (0, 0)


def test_problems_lists_every_kind_with_its_json_schema(client, auth):
    from jobs.specs.job import PROBLEMS

    body = client.get("/v1/problems", headers=auth).json()
    kinds = {p["kind"]: p for p in body["data"]}
    assert set(kinds) == set(PROBLEMS)
    fr = kinds["feature_regularization"]
    assert fr["over_dataset"] and not kinds["toy"]["over_dataset"]
    assert {"dataset", "model", "per", "init_penalty"} <= set(fr["json_schema"]["properties"])
    assert kinds["mlp"]["json_schema"]["properties"]["hidden"]["maxItems"] == 4


def test_a_batch_size_on_a_problem_without_data_is_422_at_the_field(client, auth):
    spec = example("toy")
    spec["inner"]["batch_size"] = 8
    r = client.post("/v1/jobs", json=spec, headers=auth)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "inner.batch_size"


def test_the_graph_budget_is_checked_at_the_datasets_size(make_client, auth, small):
    client = make_client(max_graph_bytes=50_000_000)
    dataset_id = _upload(client, auth, small).json()["id"]
    spec = _spec(dataset_id, "mlp")
    spec["problem"]["hidden"] = [1024, 1024]
    spec["inner"]["steps"] = 500
    spec["hypergradient"] = {"method": "full"}
    spec["diagnostics"]["every"] = 0
    r = client.post("/v1/jobs", json=spec, headers=auth)
    assert r.status_code == 422
    (err,) = r.json()["errors"]
    assert err["field"] == "inner.steps" and "max_graph_bytes" in err["message"]
    spec["inner"]["batch_size"] = 4  # fewer rows per step: a far smaller graph
    spec["problem"]["hidden"] = [16]
    assert client.post("/v1/jobs", json=spec, headers=auth).status_code == 201


def test_hypercleaning_needs_class_labels_and_is_refused_for_another_team(client, auth, other_auth):
    arrays = digits_arrays(n_train=100, n_val=50, seed=random.randrange(1 << 30))
    for s in ("train", "val", "test"):
        arrays[f"y_{s}"] = arrays[f"y_{s}"].astype("float64")
    regression_id = _upload(client, auth, npz_bytes(arrays)).json()["id"]
    spec = example("hypercleaning")
    del spec["problem"]["n_train"], spec["problem"]["n_val"]
    spec["problem"]["dataset"] = regression_id
    r = client.post("/v1/jobs", json=spec, headers=auth)
    assert r.status_code == 422 and "class labels" in r.json()["errors"][0]["message"]
    r = client.post("/v1/jobs", json=spec, headers=other_auth)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "problem.dataset"


def test_a_task_column_makes_tasks_and_task_interaction_needs_one(client, auth, small):
    arrays = digits_arrays(n_train=100, n_val=50, seed=random.randrange(1 << 30))
    for s in ("train", "val", "test"):
        arrays[f"task_{s}"] = np.arange(len(arrays[f"y_{s}"])) % 4
    body = _upload(client, auth, npz_bytes(arrays)).json()
    assert body["n_tasks"] == 4
    spec = _spec(body["id"], "task_interaction")
    assert client.post("/v1/jobs", json=spec, headers=auth).status_code == 201
    plain = _upload(client, auth, small).json()
    assert plain["n_tasks"] == 0
    r = client.post("/v1/jobs", json=_spec(plain["id"], "task_interaction"), headers=auth)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "problem.dataset"
    assert "task_train" in r.json()["errors"][0]["message"]
