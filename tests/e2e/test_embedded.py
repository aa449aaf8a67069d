"""The embedded mode: ``bilevel serve`` with no configuration (SQLite + in-process executor)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx
import pytest

from api.settings import ApiSettings
from tests.e2e import dataset_flows, flows
from tests.e2e.workers import ROOT
from tests.factories import EXAMPLES, free_port, wait_ready

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def _bilevel(*args: str, env: dict[str, str], check: bool = True, **kw):
    # the console script, run as a module
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, check=check, **kw,
    )  # fmt: skip


def _cli(*args: str, capsys, env: dict[str, str], monkeypatch) -> tuple[int, str, str]:
    """The same commands in this process (no torch import per call): ``(code, out, err)``."""
    from cli.main import main

    monkeypatch.setenv("BILEVEL_STATE_DIR", env["BILEVEL_STATE_DIR"])
    capsys.readouterr()
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    state = tmp_path_factory.mktemp("state")
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "BROKER_URL", "CELERY_BROKER_URL")}  # fmt: skip
    env.update(BILEVEL_STATE_DIR=str(state), BILEVEL_FLUSH_EVERY_S="0.1",
               BILEVEL_TORCH_THREADS="1")  # fmt: skip
    port = free_port()
    log = open(state / "serve.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", "--port", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    if not wait_ready(url, proc, 120):
        proc.kill()
        pytest.fail((state / "serve.log").read_text())
    yield url, state, env
    proc.terminate()
    proc.wait(15)
    log.close()


@pytest.fixture(scope="module")
def client(embedded):
    with httpx.Client(base_url=embedded[0], timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def auth(embedded):
    _, state, _ = embedded
    key = (state / "api_key").read_text().strip()
    return {"Authorization": f"Bearer {key}"}


def test_first_start_prints_the_url_and_a_key_and_keeps_state_in_the_directory(embedded, auth):
    url, state, _ = embedded
    out = (state / "serve.log").read_text()
    assert f"serving on {url}" in out
    assert auth["Authorization"].split()[1] in out
    assert (state / "bilevel.db").exists()
    assert oct((state / "api_key").stat().st_mode & 0o777) == "0o600"


def test_a_submitted_job_runs_in_process_and_succeeds(client, auth):
    flows.submit_run_and_download(client, auth)


def test_a_plugin_kind_runs_in_process_and_records_its_package(client, auth):
    flows.plugin_job_runs(client, auth)


def test_cli_problems_lists_each_kind_with_its_source(embedded, capsys, monkeypatch):
    from importlib.metadata import version

    url, _, env = embedded
    code, out, _ = _cli("problems", "--url", url, capsys=capsys, env=env, monkeypatch=monkeypatch)
    rows = {line.split()[0]: line.split("  ") for line in out.splitlines()[1:]}
    assert code == 0
    assert out.splitlines()[0].split() == ["kind", "source", "options"]
    plugin = [c.strip() for c in rows["digits_mlp"] if c.strip()]
    assert plugin == ["digits_mlp", f"bilevel-digits-mlp {version('bilevel-digits-mlp')}",
                      "dataset, hidden, n_train, n_val, init_penalty"]  # fmt: skip
    assert [c.strip() for c in rows["toy"] if c.strip()] == ["toy", "builtin", "w0"]


def test_a_running_job_is_cancelled(client, auth):
    flows.cancel_a_running_job(client, auth)


def test_errors_are_problems_with_a_second_team_from_keys_create(
    client, auth, embedded, capsys, monkeypatch
):
    _, _, env = embedded
    kw = {"capsys": capsys, "env": env, "monkeypatch": monkeypatch}
    code, key, _ = _cli("keys", "create", "--team", "other", **kw)
    assert code == 0 and key.startswith("blv_") and key.count("\n") == 1
    flows.errors_are_problems(client, auth, {"Authorization": f"Bearer {key.strip()}"})
    code, listed, _ = _cli("keys", "list", **kw)
    assert "\tother\t" in listed and "\tlocal\t" in listed
    prefix = key.split("_")[1]
    assert _cli("keys", "revoke", prefix, **kw)[0] == 0
    # the server may trust its key cache for key_cache_ttl_s more (README: revocation bound)
    deadline = time.monotonic() + ApiSettings().key_cache_ttl_s + 1.0
    while (r := client.get("/v1/jobs", headers={"Authorization": f"Bearer {key.strip()}"})
           ).status_code == 200 and time.monotonic() < deadline:  # fmt: skip
        time.sleep(0.1)
    assert r.status_code == 401


def test_cli_submit_watch_trace_and_cancel(embedded, tmp_path, capsys, monkeypatch):
    url, _, env = embedded
    kw = {"capsys": capsys, "env": env, "monkeypatch": monkeypatch}
    spec = json.loads((EXAMPLES / "toy.json").read_text())
    spec["outer"]["iterations"] = 30
    spec["inner"]["steps"] = 10
    path = tmp_path / "job.json"
    path.write_text(json.dumps(spec))
    code, job_id, _ = _cli("submit", str(path), "--url", url, **kw)
    job_id = job_id.strip()
    code, watched, progress = _cli("watch", job_id, "--url", url, "--interval", "0.1", **kw)
    assert (code, watched.strip()) == (0, "succeeded") and "30/30" in progress
    code, status, _ = _cli("status", job_id, "--url", url, **kw)
    assert json.loads(status)["progress"]["iteration"] == 30
    _, csv, _ = _cli("trace", job_id, "--url", url, "--format", "csv", "--fields", "outer_loss",
                     **kw)  # fmt: skip
    lines = csv.splitlines()
    assert lines[0] == "iteration,outer_loss" and len(lines) == 31
    code, _, err = _cli("cancel", job_id, "--url", url, **kw)
    assert code == 2 and "409" in err and len(err.splitlines()) == 1


def test_cli_rejects_an_invalid_spec_with_one_line_and_exit_2(embedded, tmp_path):
    url, _, env = embedded
    spec = json.loads((EXAMPLES / "toy.json").read_text())
    spec["hypergradient"]["K"] = 1000
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(spec))
    out = _bilevel("submit", str(path), "--url", url, env=env, check=False)
    assert out.returncode == 2 and "hypergradient.K" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_run_executes_a_job_without_a_server(tmp_path, capsys, monkeypatch):
    spec = json.loads((EXAMPLES / "counterexample.json").read_text())
    spec["outer"]["iterations"] = 12
    path = tmp_path / "job.json"
    path.write_text(json.dumps(spec))
    env = {"BILEVEL_STATE_DIR": str(tmp_path)}
    code, out, err = _cli("run", str(path), "--out", str(tmp_path / "out"), capsys=capsys,
                          env=env, monkeypatch=monkeypatch)  # fmt: skip
    result = json.loads(out)
    assert code == 0 and result["iterations"] == 12 and "12/12" in err
    assert (tmp_path / "out" / "hparams.npz").exists()
    lines = (tmp_path / "out" / "trace.csv").read_text().splitlines()
    assert len(lines) == 13


def test_worker_command_needs_the_distributed_store(tmp_path, capsys, monkeypatch):
    for name in ("DATABASE_URL", "BROKER_URL", "CELERY_BROKER_URL"):
        monkeypatch.delenv(name, raising=False)
    env = {"BILEVEL_STATE_DIR": str(tmp_path)}
    kw = {"capsys": capsys, "env": env, "monkeypatch": monkeypatch}
    code, _, err = _cli("worker", **kw)
    assert code == 2 and "DATABASE_URL" in err and len(err.splitlines()) == 1
    monkeypatch.setenv("DATABASE_URL", "postgresql://x@127.0.0.1:1/x")
    monkeypatch.setenv("BROKER_URL", "redis://127.0.0.1:1/0")
    code, _, err = _cli("worker", "--gpus", "0,a", **kw)
    assert code == 2 and "--gpus" in err


def test_uploaded_dataset_jobs_learn_and_the_cli_lists_and_removes_it(
    client, auth, embedded, tmp_path, capsys, monkeypatch
):
    from tests.dataset_files import digits_arrays, npz_bytes

    url, _, env = embedded
    kw = {"capsys": capsys, "env": env, "monkeypatch": monkeypatch}
    code, key, _ = _cli("keys", "create", "--team", "datasets-other", **kw)
    other = {"Authorization": f"Bearer {key.strip()}"}
    dataset_id = dataset_flows.upload_train_and_download(client, auth, other)

    path = tmp_path / "digits.npz"
    path.write_bytes(npz_bytes(digits_arrays(n_train=200, n_val=100)))
    code, out, err = _cli("datasets", "upload", str(path), "--name", "cli-digits", "--url", url,
                          **kw)  # fmt: skip
    assert code == 0 and "classification, 10 classes" in err and "rows train 200" in err
    uploaded = out.strip()
    code, listed, _ = _cli("datasets", "list", "--url", url, **kw)
    assert code == 0 and uploaded in listed and dataset_id in listed and "200/100/" in listed
    assert _cli("datasets", "rm", uploaded, "--url", url, **kw)[0] == 0
    assert uploaded not in _cli("datasets", "list", "--url", url, **kw)[1]

    bad = tmp_path / "bad.npz"
    bad.write_bytes(path.read_bytes()[:1000])
    code, _, err = _cli("datasets", "upload", str(bad), "--url", url, **kw)
    errors = [line for line in err.splitlines() if line.startswith("bilevel: error:")]
    assert code == 2 and len(errors) == 1 and "truncated" in errors[0]  # after the bar
