"""The load benchmark runs end to end on a tiny configuration and reports every figure."""

from __future__ import annotations

import json


def test_load_benchmark_smoke_reports_throughput_latency_losses_and_overhead(
    pg_server, redis_url, tmp_path, capsys
):
    from benchmarks.service import load

    out = tmp_path / "load.json"
    argv = [
        "--pollers",
        "3",
        "--submitters",
        "1",
        "--jobs",
        "2",
        "--iterations",
        "20",
        "--workers",
        "1",
        "--submit-over",
        "0.5",
        "--poll-min",
        "0.2",
        "--poll-max",
        "1",
        "--overhead-repeats",
        "1",
        "--overhead-iterations",
        "20",
        "--pg-admin-url",
        pg_server,
        "--redis-url",
        redis_url,
        "--out",
        str(out),
    ]
    assert load.main(argv) == 0
    report = json.loads(out.read_text())
    assert set(report["routes"]) == {
        "POST /v1/jobs",
        "GET /v1/jobs/{id}",
        "GET /v1/jobs/{id}/trace",
    }
    for row in report["routes"].values():
        assert row["requests"] > 0 and row["errors"] == 0
        assert 0 < row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]
    assert report["load"]["throughput_rps"] > 0 and report["load"]["errors"] == 0
    assert {"poll_p50_ms", "poll_p99_ms", "target_met"} <= set(report["load"])
    acc = report["accounting"]
    assert acc["jobs_submitted"] == acc["jobs_succeeded"] == 2 and acc["jobs_lost"] == 0
    assert acc["trace_points_expected"] == acc["trace_points_stored"] == 40
    assert acc["trace_points_lost"] == acc["poller_points_missed"] == 0
    assert acc["complete_follows"] > 0
    cpu = report["cpu"]
    assert cpu["samples"] > 0 and cpu["slow"]["requests"] + cpu["fast"]["requests"] == sum(
        report["routes"][r]["requests"] for r in ("GET /v1/jobs/{id}", "GET /v1/jobs/{id}/trace")
    )
    overhead = report["trace_overhead"]
    assert overhead["fit_alone_median_s"] > 0 and "overhead_pct" in overhead
    assert "pollers' p99" in capsys.readouterr().out
