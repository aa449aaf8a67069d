"""The client and the CLI against ``bilevel serve``: real jobs, and the quickstart notebook.

The notebook runs as a reader would run it (nbclient, a Python kernel) against the embedded
server this module starts, with the server's URL and state directory in the environment.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from client import Client
from tests.e2e.dashboard_helpers import start_service
from tests.e2e.workers import ROOT
from tests.factories import tiny_spec

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::ResourceWarning")]


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    svc = start_service(tmp_path_factory.mktemp("state"), timeout=120)
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def toy_job(service):
    with Client(service.url, service.key) as c:
        job = c.jobs.wait(c.jobs.submit(tiny_spec(iterations=12)).id, progress=False,
                          interval=0.2, timeout=120)  # fmt: skip
    assert job.status == "succeeded", job.error
    return job


def _bilevel(service, *argv: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "BILEVEL_URL": service.url, "BILEVEL_API_KEY": service.key}
    return subprocess.run([sys.executable, "-m", "cli.main", *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=False, **kw)  # fmt: skip


def test_a_waited_job_has_its_trace_result_and_hparams(service, toy_job):
    with Client(service.url, service.key) as c:
        trace = c.jobs.trace(toy_job.id).to_pandas()
        result = c.jobs.result(toy_job.id)
        hparams = c.jobs.hparams(toy_job.id)
    assert list(trace.index) == list(range(1, 13))
    # the summary's best is the trace's minimum, at the iteration it names
    best = toy_job.summary["best_outer_loss"]
    assert trace["outer_loss"].min() == pytest.approx(best)
    assert trace["outer_loss"].loc[toy_job.summary["best_iteration"]] == pytest.approx(best)
    assert result.iterations == 12
    # the archive holds the same numbers the result's JSON shows (the toy's lambda, 2 values)
    assert list(hparams) == ["hparams"]
    np.testing.assert_allclose(hparams["hparams"], result.hparams)


def test_cli_result_and_hparams_print_and_write_what_the_client_reads(service, toy_job, tmp_path):
    out = _bilevel(service, "result", str(toy_job.id))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["field", "value"]
    assert lines[1].split() == ["status", "succeeded"]
    assert lines[2].split() == ["iterations", "12"]
    path = tmp_path / "h.npz"
    out = _bilevel(service, "hparams", str(toy_job.id), "-o", str(path))
    assert (out.returncode, out.stdout) == (0, f"{path}\n")
    assert out.stderr.startswith(f"wrote {path}: ") and "arrays hparams" in out.stderr
    with np.load(path) as f:
        assert f["hparams"].shape == (2,)


def test_trace_into_a_closed_pipe_ends_without_a_traceback(service, toy_job):
    cmd = f"{sys.executable} -m cli.main trace {toy_job.id} | head -1"
    env = {**os.environ, "BILEVEL_URL": service.url, "BILEVEL_API_KEY": service.key}
    out = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=False)  # fmt: skip
    assert out.stdout.split()[:2] == ["iteration", "outer_loss"]
    assert out.stderr == ""
    assert out.returncode in (0, 141)  # 141 when the pipe closed before the last line


def test_the_quickstart_notebook_runs_against_the_embedded_server(service, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("BILEVEL_URL", service.url)
    monkeypatch.setenv("BILEVEL_STATE_DIR", str(service.state))  # the key file, as a user's
    monkeypatch.delenv("BILEVEL_API_KEY", raising=False)
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(ROOT / "examples" / "quickstart.ipynb", as_version=4)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": ROOT}}
    ).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 3  # the trace, the penalties, the study's table
    # the study's table: a row per K, indexed by the swept path
    table = next(o for o in outputs if "text/html" in o.get("data", {}))["data"]["text/plain"]
    lines = table.split("\n\n")[0].splitlines()
    assert lines[1].split() == ["hypergradient.K"]
    assert [line.split()[:3] for line in lines[2:]] == [["1", "1", "1"], ["5", "1", "1"],
                                                        ["30", "1", "1"]]  # fmt: skip


def test_the_readmes_quickstart_runs_as_written(service, monkeypatch, capsys):
    import re

    code = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    monkeypatch.setenv("BILEVEL_URL", service.url)
    monkeypatch.setenv("BILEVEL_API_KEY", service.key)
    monkeypatch.chdir(ROOT)  # its spec path is the repository's examples/toy.json
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("succeeded ")
    assert "'hparams': array(" in printed[1]
