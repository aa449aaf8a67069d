"""`bilevel run` runs a single-loop method and a warm-started estimator like any job."""

from __future__ import annotations

import csv
import json

import pytest

from cli.main import main
from tests.factories import tiny_spec


@pytest.mark.parametrize(
    ("hypergradient", "inner"),
    [({"method": "saba"}, {}), ({"method": "truncated", "K": 2}, {"warm_start": True})],
)
def test_bilevel_run_writes_one_trace_row_per_iteration(tmp_path, capsys, hypergradient, inner):
    spec = tiny_spec(iterations=7)
    spec["hypergradient"] = hypergradient
    spec["inner"].update(inner)
    spec["outer"]["schedule"] = "constant"
    spec["diagnostics"]["every"] = 0
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 0
    with open(tmp_path / "out" / "trace.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(float(r["iteration"])) for r in rows] == list(range(1, 8))
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["iterations"] == 7
    assert result["best_outer_loss"] == min(float(r["outer_loss"]) for r in rows)
