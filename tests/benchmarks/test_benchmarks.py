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


def test_peers_benchmark_agrees_with_every_installed_peer(tmp_path, capsys):
    from benchmarks import peers

    out = tmp_path / "peers.json"
    argv = [
        "--n",
        "60",
        "--d",
        "8",
        "--T",
        "6",
        "--K",
        "1",
        "3",
        "--repeats",
        "1",
        "--json",
        str(out),
    ]
    assert peers.main(argv) == 0
    rows = json.loads(out.read_text())["rows"]
    assert {r["method"] for r in rows} >= {"floor", "ours K=1", "ours+closed K=3", "ours full"}
    # the closed-form inner gradient and every peer compute the same hypergradient
    assert all(r["rel_diff"] < 1e-5 for r in rows if "rel_diff" in r)
