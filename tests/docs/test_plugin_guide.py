"""The plugin guide, followed literally: its files make a package that installs and runs.

Every fenced block of ``docs/guides/plugins.md`` with a ``title="PATH"`` is written to PATH
in a fresh directory; that directory is installed with pip (into a target of its own, not
this environment) as the guide says, and a job of the new kind runs with ``bilevel run``.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "guides" / "plugins.md"
_BLOCK = re.compile(r'^```\w+ title="([^"]+)"\n(.*?)^```$', re.S | re.M)

pytestmark = pytest.mark.integration


def guide_files() -> dict[str, str]:
    """The guide's titled code blocks: path -> text."""
    return {m.group(1): m.group(2) for m in _BLOCK.finditer(GUIDE.read_text())}


def test_the_guide_holds_a_whole_package():
    assert set(guide_files()) == {
        "pyproject.toml",
        "bilevel_ridge/__init__.py",
        "bilevel_ridge/spec.py",
        "bilevel_ridge/problem.py",
        "job.json",
    }


def test_the_guides_plugin_installs_and_its_job_runs(tmp_path):
    pkg, site, out = tmp_path / "bilevel-ridge", tmp_path / "site", tmp_path / "out"
    for name, text in guide_files().items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text)
    # `pip install ./bilevel-ridge`, into a directory of the test's own
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(site), str(pkg)],
                   check=True, capture_output=True, text=True)  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}

    def bilevel(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "cli.main", *argv], cwd=tmp_path, env=env,
                              capture_output=True, text=True, check=False)  # fmt: skip

    run = bilevel("run", str(pkg / "job.json"), "--out", str(out))
    assert run.returncode == 0, run.stderr
    result = json.loads((out / "result.json").read_text())
    assert result["iterations"] == 20
    # learning the penalties lowered the validation loss below the first iteration's
    with open(out / "trace.csv", newline="") as f:
        first = float(next(csv.DictReader(f))["outer_loss"])
    assert result["best_outer_loss"] < first
    assert set(result["metrics"]) == {"val_rmse"}
    with np.load(out / "hparams.npz") as f:
        assert f.files == ["log_penalty"]
        assert f["log_penalty"].shape == (10,)  # the diabetes table's ten features
        learned = f["log_penalty"]
    # the fit hook refuses a classification table, at the field to change
    spec = json.loads((pkg / "job.json").read_text())
    spec["problem"]["dataset"] = "digits"
    (tmp_path / "digits.json").write_text(json.dumps(spec))
    refused = bilevel("run", str(tmp_path / "digits.json"))
    assert (refused.returncode, refused.stderr) == (2, (
        f"bilevel: error: {tmp_path / 'digits.json'}: problem.dataset: digits is a "
        "classification data set; ridge_penalties needs float targets\n"
    ))  # fmt: skip
    # the outer loop moved the penalties from where initial_hparams put them
    assert not np.allclose(learned, np.log(1e-2))
