"""A client generated from the served OpenAPI document by a standard generator works.

``openapi-python-client`` (the dev extra) writes a Python package from ``/openapi.json`` of
the app served by uvicorn on a loopback port (SQLite store, a dispatcher that records
sends); the test imports it and submits, reads, lists and downloads through it. Generation
must not drop an operation or a response: that is how a schema-less body got lost before.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from types import ModuleType

import httpx
import numpy as np
import pytest
import uvicorn
from sqlalchemy import update

from api import ApiSettings, create_app
from api.openapi import NPZ
from jobs import repo
from jobs.models import Job
from jobs.status import JobStatus
from tests.api.conftest import RecordingDispatcher
from tests.factories import bearer, team_with_key, tiny_spec

PACKAGE = "bilevel_generated_client"
HPARAMS = "/v1/jobs/{job_id}/hparams"
# No post-hooks: they run ruff on the output, which costs time and proves nothing here. No
# content-type overrides either: the generator knows JSON, text and application/octet-stream
# bodies only, and the document must offer `.npz` files as the latter itself.
GENERATOR_CONFIG = "post_hooks: []\n"


def _generator() -> str:
    exe = Path(sys.executable).with_name("openapi-python-client")
    found = str(exe) if exe.exists() else shutil.which("openapi-python-client")
    if found is None:
        reason = "openapi-python-client is not installed (pip install -e .[dev])"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI needs the generator: {reason}")
        pytest.skip(reason)
    return found


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from jobs.db import make_engine, make_session_factory, sqlite_url, upgrade

    url = sqlite_url(tmp_path_factory.mktemp("openapi-client-store"))
    upgrade(url)
    engine = make_engine(url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture(scope="module")
def dispatcher():
    return RecordingDispatcher()


@pytest.fixture(scope="module")
def served(store, dispatcher, tmp_path_factory):
    """The app under uvicorn in a thread, on a loopback socket bound here (no port race)."""
    settings = ApiSettings(
        database_url=None, broker_url=None, state_dir=tmp_path_factory.mktemp("state")
    )
    app = create_app(settings, dispatcher=dispatcher, sessions=store)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    yield url
    server.should_exit = True
    thread.join(10)
    sock.close()


def _generate(doc: dict, out: Path) -> str:
    """Write the client of ``doc`` to ``out / PACKAGE``; the generator's log."""
    spec = out / "openapi.json"
    spec.write_text(json.dumps(doc))
    config = out / "config.yaml"
    config.write_text(GENERATOR_CONFIG)
    run = subprocess.run(
        [_generator(), "generate", "--path", str(spec), "--config", str(config),
         "--meta", "none", "--output-path", str(out / PACKAGE)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    log = run.stdout + run.stderr
    assert run.returncode == 0, log
    return log


def _warned(log: str) -> bool:
    """Whether the generator reported something it could not read (and left out)."""
    return any(w in log for w in ("omitted", "Unable to", "Cannot parse", "will not be generated"))


@pytest.fixture(scope="module")
def generation(served, tmp_path_factory) -> tuple[Path, str]:
    """The client generated from the served document: its folder and the generator's log."""
    out = tmp_path_factory.mktemp("generated")
    return out, _generate(httpx.get(f"{served}/openapi.json").json(), out)


@pytest.fixture(scope="module")
def generated(generation) -> ModuleType:
    """The client package generated from the served document, imported."""
    out, log = generation
    # the generator reports what it could not read and leaves it out of the client
    assert not _warned(log), log
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(out))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


@pytest.fixture(scope="module")
def client(generated, served, store):
    _, key = team_with_key(store)
    with generated.AuthenticatedClient(base_url=served, token=key) as c:
        yield c


def _op(generated: ModuleType, tag: str, name: str) -> ModuleType:
    """The generated module of operation ``<tag>-<name>``: ``api/<tag>/<tag>_<name>.py``."""
    return importlib.import_module(f"{generated.__name__}.api.{tag}.{tag}_{name}")


def test_the_generated_client_submits_reads_and_lists_a_job(generated, client, dispatcher):
    from bilevel_generated_client.models import JobPublic, JobSpec, JobsPublic
    from bilevel_generated_client.models import JobStatus as GeneratedStatus

    submitted = _op(generated, "jobs", "submit_job").sync_detailed(
        client=client, body=JobSpec.from_dict(tiny_spec(name="generated"))
    )
    assert submitted.status_code == 201
    job = submitted.parsed
    assert isinstance(job, JobPublic)
    assert job.status is GeneratedStatus.QUEUED
    assert dispatcher.sent[-1][0] == job.id
    read = _op(generated, "jobs", "get_job").sync(job_id=job.id, client=client)
    assert isinstance(read, JobPublic)
    assert (read.id, read.name) == (job.id, "generated")
    page = _op(generated, "jobs", "list_jobs").sync(client=client, status=GeneratedStatus.QUEUED)
    assert isinstance(page, JobsPublic)
    assert [j.id for j in page.data] == [job.id]


def test_the_generated_enum_is_the_servers(generated):
    from bilevel_generated_client.models import JobStatus as GeneratedStatus

    assert {s.value for s in GeneratedStatus} == {s.value for s in JobStatus}


def test_a_problem_response_is_parsed_as_a_problem(generated, client):
    from bilevel_generated_client.models import JobSpec, Problem

    job = _op(generated, "jobs", "submit_job").sync(
        client=client, body=JobSpec.from_dict(tiny_spec())
    )
    answer = _op(generated, "jobs", "get_result").sync_detailed(job_id=job.id, client=client)
    assert answer.status_code == 409
    assert isinstance(answer.parsed, Problem)
    assert answer.parsed.type_ == "/problems/not-ready"


def _succeed_with_hparams(store, job_id) -> None:
    """What the worker leaves behind a success (worker.runner), without running one."""
    buf = io.BytesIO()
    np.savez(buf, hparams=np.array([0.25, -1.5]))
    with store.begin() as s:
        repo.save_artifact(s, job_id, "hparams", buf.getvalue(), iteration=20, media_type=NPZ)
        s.execute(update(Job).where(Job.id == job_id).values(status=JobStatus.SUCCEEDED))


def test_the_generated_client_downloads_hparams_as_a_file(generated, client, store):
    from bilevel_generated_client.models import JobSpec
    from bilevel_generated_client.types import File

    job = _op(generated, "jobs", "submit_job").sync(
        client=client, body=JobSpec.from_dict(tiny_spec())
    )
    _succeed_with_hparams(store, job.id)
    answer = _op(generated, "jobs", "get_hparams").sync_detailed(job_id=job.id, client=client)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == NPZ
    assert isinstance(answer.parsed, File)
    with np.load(answer.parsed.payload) as z:
        np.testing.assert_array_equal(z["hparams"], [0.25, -1.5])


def test_the_generator_keeps_the_hparams_download_without_a_warning(generation, generated):
    _, log = generation
    assert HPARAMS not in log and "get_hparams" not in log, log
    download = _op(generated, "jobs", "get_hparams")
    assert callable(download.sync_detailed) and callable(download.asyncio_detailed)
    # with its 200: a dropped response leaves the function, answering None for the file
    assert "response.status_code == 200" in Path(download.__file__).read_text()


def test_offered_as_npz_alone_the_download_is_dropped_with_a_warning(served, tmp_path):
    # what the document offered before: the same generator leaves the file out, saying so
    doc = httpx.get(f"{served}/openapi.json").json()
    ok = doc["paths"][HPARAMS]["get"]["responses"]["200"]
    ok["content"] = {NPZ: ok["content"][NPZ]}
    log = _generate(doc, tmp_path)
    assert HPARAMS in log and _warned(log), log
    module = tmp_path / PACKAGE / "api" / "jobs" / "jobs_get_hparams.py"
    assert "response.status_code == 200" not in module.read_text()


def test_a_client_asking_for_raw_bytes_gets_them(served, store):
    _, key = team_with_key(store)
    auth = bearer(key)
    submitted = httpx.post(f"{served}/v1/jobs", json=tiny_spec(), headers=auth)
    assert submitted.status_code == 201, submitted.text
    job_id = uuid.UUID(submitted.json()["id"])
    _succeed_with_hparams(store, job_id)
    for accept, sent in [
        (None, NPZ),
        ("application/octet-stream", "application/octet-stream"),
        (f"{NPZ}, application/octet-stream;q=0.5", NPZ),
        ("*/*", NPZ),
    ]:
        headers = {**auth, **({"Accept": accept} if accept else {})}
        r = httpx.get(f"{served}/v1/jobs/{job_id}/hparams", headers=headers)
        assert (r.status_code, r.headers["content-type"]) == (200, sent), accept
        with np.load(io.BytesIO(r.content)) as z:
            np.testing.assert_array_equal(z["hparams"], [0.25, -1.5])
