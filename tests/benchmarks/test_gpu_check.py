"""The GPU check runs on the CPU too, and its correctness table is meaningful."""

from __future__ import annotations

import json

from benchmarks import gpu_check


def test_gpu_check_smoke_on_cpu(tmp_path, capsys):
    assert (
        gpu_check.main(["--device", "cpu", "--small", "--repeats", "1", "--out", str(tmp_path)])
        == 0
    )
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    methods = {r["method"] for r in report["correctness"]}
    assert methods == set(gpu_check.OPTIONS)
    # float32 against float64: rounding-level agreement, not bit equality
    assert all(0 < r["rel_error"] < 1e-4 for r in report["correctness"])
    floor = next(r for r in report["timings"] if r["method"] == "floor")
    assert floor["vs_floor"] == 1.0
    assert "rel. error vs CPU float64" in capsys.readouterr().out
