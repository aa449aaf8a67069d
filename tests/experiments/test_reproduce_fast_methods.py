"""`bilevel reproduce fast-methods` in a tiny configuration: figures, report, every curve."""

from __future__ import annotations

import json
import os

import pytest

from cli.main import main
from tests.shared_data import DATA


def _require_mnist():
    folder = DATA / "mnist"
    if (folder / "train-images-idx3-ubyte.gz").is_file():
        return DATA
    if os.environ.get("CI") == "true":
        pytest.fail(f"MNIST not found in {folder}; CI must provide ../shared/data")
    pytest.skip(f"MNIST not found in {folder}")


def test_reproduce_fast_methods_writes_both_figures_and_a_report(tmp_path):
    data = _require_mnist()
    out = tmp_path / "fast"
    argv = ["reproduce", "fast-methods", "--out", str(out), "--data-dir", str(data)]
    argv += ["--seeds", "0", "--budget-s", "0.4", "--quadratic-budget-s", "0.3"]
    assert main([*argv, "--methods", "f2sa", "krmd_warm_minibatch"]) == 0
    for name in ("fig_data_cleaning.png", "fig_quadratic_pair.png", "report.md"):
        assert (out / name).stat().st_size > 0
    results = json.loads((out / "results.json").read_text())
    rows = results["data_cleaning"]["rows"]
    assert [r["method"] for r in rows] == ["f2sa", "krmd_warm_minibatch"]
    # ten classes: a fraction of a second of either method beats chance by far
    assert all(r["best"][0] > 0.5 for r in rows)
    quad = {r["method"]: r for r in results["quadratic_pair"]["rows"]}
    start = results["quadratic_pair"]["curves"]["saba"][0][0][1]
    assert quad["saba"]["best"][0] < start  # SABA moved towards λ*
    report = (out / "report.md").read_text()
    assert "krmd_warm_minibatch" in report and "s to 0.856" in report
