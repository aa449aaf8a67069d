"""The API installs and runs without torch: `pip install .[api]` is the API image.

A fresh virtual environment per test run would download the API's dependencies each time;
instead the tests check the two halves of the property: the ``api`` dependency group (with
the base) names none of the worker's heavy packages, and ``bilevel serve`` in the distributed
mode answers ``/readyz`` in a process where importing torch, matplotlib or scikit-learn fails.
The closing note of issue 12 reports a real fresh install and its size.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx

from tests.factories import free_port, wait_ready

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "matplotlib", "scikit-learn", "sklearn", "numpy")
# importing any of these raises ImportError in the served process
BLOCK = "import sys; sys.modules.update(dict.fromkeys(('torch', 'matplotlib', 'sklearn')))"


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0].lower() for r in requirements}


def test_the_api_group_and_the_base_install_carry_no_torch():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = project["optional-dependencies"]
    api = _names(project["dependencies"]) | _names(groups["api"])
    assert not api & set(HEAVY), api & set(HEAVY)
    # and the worker's group does bring torch: the split is where it should be
    assert "torch" in _names(groups["worker"])


def test_distributed_serve_starts_where_torch_cannot_be_imported(pg_url, redis_url, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DATABASE_URL": pg_url,
        "BROKER_URL": redis_url,
        "BILEVEL_STATE_DIR": str(tmp_path),
    }
    code = f"{BLOCK}; from cli.main import main; sys.exit(main())"
    cmd = [sys.executable, "-c", code, "serve", "--host", "127.0.0.1", "--port", str(port)]
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            ready = wait_ready(url, proc, timeout_s=60)
            assert ready, log.read_text()[-3000:]
            assert httpx.get(f"{url}/openapi.json").status_code == 200
        finally:
            proc.terminate()
            proc.wait(timeout=30)
