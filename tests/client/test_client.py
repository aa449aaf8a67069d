"""The Python client on the real API in this process: calls, errors, retries, uploads."""

from __future__ import annotations

import asyncio
import json

import httpx
import numpy as np
import pandas as pd
import pytest

from client import ApiError, AsyncClient, Client, MissingKey, ServiceUnreachable, Study, Trace
from client._inputs import study_frame
from client.arrays import read_npz, split_frame
from tests.dataset_files import digits_arrays
from tests.factories import tiny_spec

# the upload's long read timeout, which TestClient does not use
pytestmark = pytest.mark.filterwarnings("ignore:You should not use the 'timeout' argument")


def test_submit_get_list_and_cancel_return_typed_jobs(api):
    job = api.jobs.submit(tiny_spec(iterations=7))
    assert job.status == "queued" and job.progress.iterations == 7
    assert api.jobs.get(job.id) == job
    assert [j.id for j in api.jobs.list()] == [job.id]
    assert api.jobs.cancel(job.id).status == "cancelled"
    assert api.jobs.list("queued") == []


def test_a_spec_is_taken_as_a_dict_a_json_string_or_a_file(api, tmp_path):
    path = tmp_path / "job.json"
    path.write_text(json.dumps(tiny_spec(iterations=3)))
    sources = (tiny_spec(iterations=3), path.read_text(), path, str(path))
    jobs = [api.jobs.submit(s) for s in sources]
    assert [j.spec["outer"]["iterations"] for j in jobs] == [3, 3, 3, 3]


def test_an_invalid_spec_raises_api_error_naming_the_field(api):
    spec = tiny_spec()
    spec["hypergradient"]["K"] = 0
    with pytest.raises(ApiError) as err:
        api.jobs.submit(spec)
    assert err.value.status == 422
    assert [e.field for e in err.value.errors] == ["hypergradient.K"]
    assert str(err.value) == "HTTP 422: hypergradient.K: Input should be greater than or equal to 1"


def test_a_missing_job_is_a_404_with_the_problem_type(api):
    with pytest.raises(ApiError) as err:
        api.jobs.get("00000000-0000-0000-0000-000000000000")
    assert (err.value.status, err.value.slug) == (404, "not-found")


class _LoseFirstAnswer(httpx.BaseTransport):
    """The server acts on the first request, then its answer is lost (a dropped connection)."""

    def __init__(self, inner: httpx.BaseTransport):
        self.inner, self.keys = inner, []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        self.keys.append(request.headers.get("Idempotency-Key"))
        if len(self.keys) == 1:
            raise httpx.ReadError("connection reset", request=request)
        return response


def test_a_create_whose_answer_was_lost_is_resent_with_its_key_and_makes_one_job(app):
    from fastapi.testclient import TestClient

    transport = _LoseFirstAnswer(TestClient(app)._transport)
    http = httpx.Client(base_url="http://testserver", transport=transport)
    with Client("http://testserver", "blv_x_y", http=http, retries=1) as c:
        job = c.jobs.submit(tiny_spec())
        assert len(transport.keys) == 2
        assert transport.keys[0] == transport.keys[1] and transport.keys[0]
        assert [j.id for j in c.jobs.list()] == [job.id]


def test_an_unreachable_service_is_service_unreachable_after_the_retries():
    with (
        Client("http://127.0.0.1:9", "blv_x_y", retries=1) as c,
        pytest.raises(ServiceUnreachable, match=r"^cannot reach http://127.0.0.1:9"),
    ):
        c.jobs.list()


def test_from_env_reads_the_url_and_the_key_or_the_state_dirs_key_file(tmp_path, monkeypatch):
    for name in ("BILEVEL_URL", "BILEVEL_API_KEY", "BILEVEL_STATE_DIR", "STATE_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BILEVEL_STATE_DIR", str(tmp_path))
    with pytest.raises(MissingKey) as err:
        Client.from_env()
    assert err.value.key_file == tmp_path.resolve() / "api_key"
    assert str(tmp_path.resolve() / "api_key") in str(err.value)
    (tmp_path / "api_key").write_text("blv_file_key\n")
    monkeypatch.setenv("BILEVEL_URL", "http://server:1234")
    c = Client.from_env()
    assert (c.url, c.http.headers["Authorization"]) == ("http://server:1234", "Bearer blv_file_key")
    c = Client.from_env(api_key="blv_arg")
    assert c.http.headers["Authorization"] == "Bearer blv_arg"


def test_arrays_upload_as_a_data_set_with_their_rows(api):
    arrays = digits_arrays(n_train=120, n_val=60)
    d = api.datasets.upload(arrays, name="digits", progress=False)
    assert (d.name, d.task, d.n_classes, d.n_features) == ("digits", "classification", 10, 64)
    assert d.rows == {"train": 120, "val": 60, "test": len(arrays["y_test"])}
    assert [x.id for x in api.datasets.list()] == [d.id]


def test_a_dataframe_uploads_split_by_its_target(api):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(50, 3)), columns=["a", "b", "c"])
    frame["y"] = (frame.a > 0).astype(int)
    d = api.datasets.upload(frame, target="y", val=0.2, test=0.2, name="t", progress=False)
    assert d.rows == {"train": 30, "val": 10, "test": 10}
    assert d.n_features == 3 and d.task == "classification"


def test_a_rejected_array_names_it(api):
    with pytest.raises(ApiError) as err:
        api.datasets.upload({"x_train": np.zeros((4, 2))}, progress=False)
    assert err.value.status == 422
    assert "y_train" in str(err.value)


def test_split_frame_partitions_the_rows():
    frame = pd.DataFrame({"x": np.arange(20.0), "y": np.arange(20) % 2})
    parts = split_frame(frame, "y", val=0.25, test=0.25, seed=1)
    seen = np.concatenate([parts[f"x_{s}"][:, 0] for s in ("train", "val", "test")])
    assert sorted(seen.tolist()) == list(range(20))
    assert [len(parts[f"y_{s}"]) for s in ("train", "val", "test")] == [10, 5, 5]
    assert parts["y_train"].dtype == np.int64
    with pytest.raises(ValueError, match="target 'z' is not a column"):
        split_frame(frame, "z")


def test_trace_to_numpy_and_pandas_keep_missing_values_as_nan():
    t = Trace({"iteration": [1, 2, 3], "outer_loss": [0.5, None, 0.25]})
    arrays = t.to_numpy()
    assert arrays["iteration"].dtype == np.int64
    assert np.isnan(arrays["outer_loss"][1]) and arrays["outer_loss"][2] == 0.25
    frame = t.to_pandas()
    assert list(frame.index) == [1, 2, 3] and frame.outer_loss.isna().sum() == 1


def test_a_traces_values_are_floats_as_the_server_wrote_them_without_a_point():
    # PostgreSQL writes the double 1.0 as 1 (repo.trace_json): json reads an int
    t = Trace(json.loads('{"iteration": [1, 2], "lr": [1, 0.5], "cosine": [-0, null]}'))
    assert t["iteration"] == [1, 2] and all(type(i) is int for i in t["iteration"])
    assert [type(x) for x in t["lr"]] == [float, float] and t["lr"] == [1.0, 0.5]
    assert t["cosine"][0] == 0.0 and type(t["cosine"][0]) is float and t["cosine"][1] is None


def test_hparams_npz_reads_to_named_arrays():
    import io

    buf = io.BytesIO()
    np.savez(buf, log_decay=np.arange(3.0), step=np.float64(0.5))
    out = read_npz(buf.getvalue())
    assert set(out) == {"log_decay", "step"}
    np.testing.assert_array_equal(out["log_decay"], [0.0, 1.0, 2.0])


def test_a_study_table_is_a_frame_indexed_by_the_grouped_paths(api):
    study = api.studies.submit(
        {
            "name": "s",
            "base": tiny_spec(iterations=3),
            "grid": {"hypergradient.K": [1, 2], "seed": [0, 1]},
        }
    )
    frame = api.studies.table(study.id)
    assert frame.index.names == ["hypergradient.K"]
    assert list(frame.index) == [1, 2]
    assert list(frame.members) == [2, 2] and list(frame.succeeded) == [0, 0]
    # a row's stats become <metric> and <metric>_std columns
    row = {"values": {"K": 1}, "members": 2, "succeeded": 2,
           "stats": {"final_outer_loss": {"mean": 1.5, "std": 0.5, "n": 2}}}  # fmt: skip
    filled = Study.model_validate({**study.model_dump(), "group_by": ["K"], "table": [row]})
    frame = study_frame(filled)
    assert (frame.loc[1, "final_outer_loss"], frame.loc[1, "final_outer_loss_std"]) == (1.5, 0.5)


def test_jobs_of_a_study_are_its_members(api):
    api.jobs.submit(tiny_spec())
    study = api.studies.submit({"name": "s", "base": tiny_spec(), "grid": {"seed": [0, 1, 2]}})
    members = {m.job_id for m in api.studies.get(study.id).members}
    assert {j.id for j in api.jobs.list(study=study.id)} == members
    assert len(members) == 3


def test_the_async_client_makes_the_same_calls(app):
    async def main() -> tuple:
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://testserver")
        async with AsyncClient("http://testserver", "blv_x_y", http=http) as c:
            job = await c.jobs.submit(tiny_spec(iterations=5))
            got = await c.jobs.get(job.id)
            listed = await c.jobs.list()
            cancelled = await c.jobs.cancel(job.id)
            return job, got, listed, cancelled

    job, got, listed, cancelled = asyncio.run(main())
    assert got == job and [j.id for j in listed] == [job.id]
    assert cancelled.status == "cancelled"
