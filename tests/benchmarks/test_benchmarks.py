"""The GPU check runs on the CPU too, and its correctness table is meaningful."""

from __future__ import annotations

import json

import pytest

from benchmarks.library import gpu_check


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
    from benchmarks.library import peers

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


def test_memory_sweep_shows_table_1s_memory_claims():
    from benchmarks.library.estimators import memory_sweep
    from benchmarks.library.problems import WeightedSoftmax

    rows = memory_sweep(WeightedSoftmax(n=200, d=16), [10, 20, 40], Ks=(1, 5))
    by = {(r["T"], r["method"]): r for r in rows}
    for name in ("truncated K=1", "truncated K=5", "truncated K=5 iterates"):
        assert by[10, name]["total_bytes"] == by[40, name]["total_bytes"], name  # flat in T
    full = [by[T, "full"]["total_bytes"] for T in (10, 20, 40)]
    # linear in T: equal increments per added step
    assert (full[2] - full[1]) == 2 * (full[1] - full[0]) > 0
    r = by[40, "truncated K=5 iterates"]
    assert r["total_bytes"] <= (5 + 1) * r["w_bytes"] + r["one_step_graph_bytes"]


# torch.compile's own internals warn about torch.jit; nothing of ours to act on
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_compiled_benchmark_runs_small_and_compiled_steps_agree(tmp_path, capsys):
    from benchmarks.library import compiled

    out = tmp_path / "compiled.json"
    assert (
        compiled.main(["--n", "50", "--d", "8", "--T", "3", "--repeats", "1", "--json", str(out)])
        == 0
    )
    rows = json.loads(out.read_text())["rows"]
    assert [r["method"] for r in rows] == ["eager", "compile", "compile max-autotune"]
    assert all(r["max_abs_diff"] < 1e-5 for r in rows)


def test_data_cleaning_benchmark_quadratic_mode_writes_rows_and_curves(tmp_path):
    from benchmarks.library import data_cleaning

    out = tmp_path / "quad.json"
    argv = ["--quadratic", "--seeds", "0", "--budget-s", "0.3", "--every-s", "0.01"]
    data_cleaning.main([*argv, "--methods", "saba", "full_rmd_warm", "--json", str(out)])
    report = json.loads(out.read_text())
    assert [r["method"] for r in report["rows"]] == ["saba", "full_rmd_warm"]
    for name, runs in report["curves"].items():
        (curve,) = runs
        assert min(m for _, m in curve) < curve[0][1], name  # each moved towards λ*


def test_peers_default_columns_follow_the_workers_compile_rule(monkeypatch):
    from benchmarks.library import peers
    from benchmarks.library.peers import _default
    from worker.compile_choice import Prior

    row = {"ours_eager_ms": 10.0, "ours_compiled_ms": 4.0, "fastest_peer_ms": 9.0}
    # a worker that measured nothing, no spare core: the payoff rule, 1 s < 10 x 0.104 s
    monkeypatch.setattr(peers, "spare_core", lambda: False)
    _default(row, 100, payoff=10.0, first="fresh", compile_s=0.1, prior=None, disk_s=0.02)
    assert row["default_100_fresh"]["compiled"] is False
    assert row["default_100_fresh"]["speedup"] == pytest.approx(0.9)
    # with a spare core it compiles in the background (1 s >= 1 x 0.104 s): 12 eager calls
    # while the child compiles 0.104 s, the compile from disk (0.02 s), 88 compiled calls
    monkeypatch.setattr(peers, "spare_core", lambda: True)
    _default(row, 100, payoff=10.0, first="fresh", compile_s=0.1, prior=None, disk_s=0.02)
    fresh = row["default_100_fresh"]
    assert fresh["background"] and "compiling in the background" in fresh["reason"]
    assert fresh["speedup"] == pytest.approx(100 * 0.009 / (12 * 0.010 + 0.02 + 88 * 0.004))
    # measured 2.5x: compiled 0.4 s + compile 0.104 s < 1 s eager, so it compiles and
    # runs one eager call, the compiling call and 98 compiled ones
    total = 0.010 + 0.1 + 99 * 0.004
    _default(row, 100, payoff=10.0, first="memory", compile_s=0.1, prior=None, disk_s=0.02)
    assert row["default_100_memory"]["compiled"] is True
    assert row["default_100_memory"]["speedup"] == pytest.approx(100 * 0.009 / total)
    # the key's first job, on a worker whose other keys gained 2.5x: it compiles on that prior
    prior = Prior((2.5,), 0.1, "kind|method", 1)
    _default(row, 100, payoff=10.0, first="cold", compile_s=0.1, prior=prior, disk_s=0.02)
    assert row["default_100_cold"]["compiled"] is True
    assert "prior: median measured on 1 other key(s)" in row["default_100_cold"]["reason"]
    assert row["default_100_cold"]["speedup"] == pytest.approx(100 * 0.009 / total)
