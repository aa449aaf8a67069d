"""The scale benchmark runs at a tiny size; its JSON holds every figure and the store's account."""

from __future__ import annotations

import json
import math
import os

import pytest

from benchmarks.service._scale_load import make_plan
from benchmarks.service._scale_report import cpu_by_role, percentile
from benchmarks.service.scale import jain_index


@pytest.mark.parametrize(
    ("xs", "expected"),
    [([2.0, 2.0, 2.0, 2.0], 1.0), ([1.0, 0.0, 0.0, 0.0], 0.25), ([1.0, 3.0], 16 / 20)],
)
def test_jain_index_on_known_cases(xs, expected):
    # (sum x)^2 / (n sum x^2): equal shares give 1, one team holding all gives 1/n
    assert math.isclose(jain_index(xs), expected)


def test_nearest_rank_percentile():
    xs = [float(i) for i in range(1, 101)]
    assert percentile(xs, 50) == 50.0 and percentile(xs, 99) == 99.0 and percentile([], 50) is None


def test_cpu_by_role_books_core_seconds_per_claimed_job():
    # two samples of 0.5 s: postgres at 1.0 then 0.6 cores (0.8 core-s), the simulator at
    # 0.4 (0.4 core-s), another program at 0.01 (below 5% of the run: not per job)
    rows = [{"dt": 0.5, "cores": {"postgres": 1.0, "simulator": 0.4, "other:vim": 0.01}},
            {"dt": 0.5, "cores": {"postgres": 0.6, "simulator": 0.4}}]  # fmt: skip
    got = cpu_by_role(rows, claims=100)
    assert got["core_s"] == {"postgres": 0.8, "simulator": 0.4, "other:vim": 0.0}
    assert got["ms_per_job"] == {"postgres": 8.0, "simulator": 4.0}
    assert got["run_ms_per_job"] == 12.0
    assert got["postgres_alone_claims_per_s"] == round(1e3 * (os.cpu_count() or 1) / 8.0)
    assert cpu_by_role([], claims=10) == {} and cpu_by_role(rows, claims=0) == {}


def test_the_plan_gives_each_team_jobs_in_proportion_to_its_weight():
    plan = make_plan(teams=10, jobs=10_000, live_jobs=1_000, live_window_s=5.0, seed=1)
    per = [sum(s.size for s in plan.preloaded if s.team == t) for t in range(10)]
    share = [w / sum(plan.weights) for w in plan.weights]
    assert all(abs(n / sum(per) - f) < 0.01 for n, f in zip(per, share))
    assert all(1 <= s.size <= 400 for s in plan.preloaded + plan.live)
    assert all(0 <= s.at_s <= 5.0 for s in plan.live) and all(s.at_s <= 0 for s in plan.preloaded)


def test_scale_benchmark_tiny_run_finishes_every_job_once(pg_server, redis_url, tmp_path):
    from benchmarks.service import scale

    out = tmp_path / "scale.json"
    argv = ["--workers", "6", "--processes", "2", "--conns", "2", "--teams", "4",
            "--jobs", "60", "--live-jobs", "12", "--trace-points", "4000",
            "--points-per-trace", "1000", "--job-s", "0.1", "--heartbeat-s", "0.05",
            "--points-per-job", "6", "--rest-rounds", "2", "--pg-admin-url", pg_server,
            "--redis-url", redis_url, "--out", str(out)]  # fmt: skip
    scale.main(argv)
    report = json.loads(out.read_text())
    assert out.with_suffix(".png").stat().st_size > 0
    assert report["errors"] == []
    inv = report["invariants"]
    n = report["sizes"]["jobs_queued"] + report["sizes"]["jobs_live"]
    assert abs(report["sizes"]["jobs_queued"] - 60) <= 4 and report["sizes"]["jobs_live"] > 0
    assert inv["expected_jobs"] == n and inv["every_job_finished_once"]
    assert inv["by_status"] == {"succeeded": n} and inv["attempts"] == {"1": n}
    # every claim the workers recorded took a distinct job, and all of them were taken
    assert report["claims"] == n and report["claims_by_job"] == {"1": n}
    assert report["claim_ms"]["n"] == n
    assert report["claim_ms"]["p50"] <= report["claim_ms"]["p99"] <= report["claim_ms"]["max"]
    assert report["jain_time_averaged"] is None or 0.25 <= report["jain_time_averaged"] <= 1.0
    for phase in ("rest", "load"):
        assert set(report["endpoints"][phase]) == {
            "jobs",
            "jobs_queued",
            "jobs_succeeded",
            "pool",
            "metrics",
            "trace_page",
            "trace_after",
        }
    assert report["endpoints"]["rest"]["pool"]["n"] == 2
    assert "cpu" in report  # booked by role when the run outlasts a sample (0.5 s)
    sizes = report["store_sizes"]
    assert sizes["trace_points"] == 4000 and sizes["trace_bytes_per_million_points"] > 0


def test_claims_are_split_at_the_first_reading_with_fewer_than_half_the_teams_backlogged():
    from benchmarks.service._scale_report import _by_phase

    # 4 teams: all backlogged at t=0 and 1, two at t=2 (not fewer than half), one at t=3
    samples = [(0.0, {t: (1, 5) for t in "abcd"}), (1.0, {t: (1, 3) for t in "abcd"}),
               (2.0, {"a": (1, 2), "b": (1, 1), "c": (1, 0)}), (3.0, {"a": (2, 1)})]  # fmt: skip
    claims = [(0.5, 0.0, 0.002, "j1"), (2.5, 0.0, 0.004, "j2"), (3.0, 0.0, 0.1, "j3"),
              (3.5, 0.0, 0.2, "j4")]  # fmt: skip
    out = _by_phase(claims, samples, teams=4)
    assert out["backlogged"]["n"] == 2 and out["backlogged"]["max"] == 4.0
    assert out["drain"]["n"] == 2 and out["drain"]["max"] == 200.0
    assert _by_phase(claims, [], teams=4)["backlogged"]["n"] == 4
