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
from pathlib import Path
from types import ModuleType

import httpx
import numpy as np
import pytest
import uvicorn
from sqlalchemy import update

from api import ApiSettings, create_app
from api.schemas import NPZ
from jobs.status import JobStatus
from jobs.store import repo
from jobs.store.models import Job
from tests.api.conftest import RecordingDispatcher
from tests.factories import team_with_key, tiny_spec

PACKAGE = "bilevel_generated_client"
# No post-hooks: they run ruff on the output, which costs time and proves nothing here. The
# generator knows JSON, text and application/octet-stream bodies only; `.npz` is raw bytes.
GENERATOR_CONFIG = f"post_hooks: []\ncontent_type_overrides:\n  {NPZ}: application/octet-stream\n"


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
    from jobs.store.db import make_engine, make_session_factory, sqlite_url
    from migrations import upgrade

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


@pytest.fixture(scope="module")
def generated(served, tmp_path_factory) -> ModuleType:
    """The client package generated from the served document, imported."""
    generator = _generator()
    out = tmp_path_factory.mktemp("generated")
    spec = out / "openapi.json"
    spec.write_text(json.dumps(httpx.get(f"{served}/openapi.json").json()))
    config = out / "config.yaml"
    config.write_text(GENERATOR_CONFIG)
    run = subprocess.run(
        [generator, "generate", "--path", str(spec), "--config", str(config),
         "--meta", "none", "--output-path", str(out / PACKAGE)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    log = run.stdout + run.stderr
    assert run.returncode == 0, log
    # the generator reports what it could not read and leaves it out of the client
    assert "omitted" not in log and "Unable to" not in log and "Cannot parse" not in log, log
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


def test_the_generated_client_downloads_hparams_as_a_file(generated, client, store):
    from bilevel_generated_client.models import JobSpec
    from bilevel_generated_client.types import File

    job = _op(generated, "jobs", "submit_job").sync(
        client=client, body=JobSpec.from_dict(tiny_spec())
    )
    buf = io.BytesIO()
    np.savez(buf, hparams=np.array([0.25, -1.5]))
    with store.begin() as s:
        # what the worker leaves behind a success (worker.runner), without running one
        repo.save_artifact(s, job.id, "hparams", buf.getvalue(), iteration=20, media_type=NPZ)
        s.execute(update(Job).where(Job.id == job.id).values(status=JobStatus.SUCCEEDED))
    answer = _op(generated, "jobs", "get_hparams").sync_detailed(job_id=job.id, client=client)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == NPZ
    assert isinstance(answer.parsed, File)
    with np.load(answer.parsed.payload) as z:
        np.testing.assert_array_equal(z["hparams"], [0.25, -1.5])
