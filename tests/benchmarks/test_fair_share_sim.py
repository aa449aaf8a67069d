"""The fair-share simulator: a short day meets the issue's figures, and its JSON is written."""

from __future__ import annotations

import json

from benchmarks.service import fair_share


def test_a_short_day_is_fair_busy_and_quick_for_the_light_team(tmp_path, capsys):
    out = tmp_path / "fair_share.json"
    assert fair_share.main(["--workers", "20", "--hours", "8", "--json", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    assert [r["preemption"] for r in results] == [False, True]
    for r in results:
        assert r["jain"] >= 0.95
        assert r["utilisation_while_queued"] >= 0.95
        assert r["teams"]["theory"]["wait_p95_s"] <= r["median_job_s"]
    # preemption moves workers: the light team waits less with it than without
    assert results[1]["preemptions"] > 0
    assert results[1]["teams"]["theory"]["wait_p95_s"] < results[0]["teams"]["theory"]["wait_p95_s"]
    assert "Jain" in capsys.readouterr().out


def test_the_entitlement_is_weighted_max_min_fair():
    # 10 workers; "a" asks for 1 only, "b" (weight 2) and "c" (weight 1) share the rest 2:1
    alloc = fair_share._entitlement({"a": 1, "b": 100, "c": 100}, {"a": 1, "b": 2, "c": 1}, 10)
    assert alloc["a"] == 1.0
    assert abs(alloc["b"] - 6.0) < 1e-9 and abs(alloc["c"] - 3.0) < 1e-9
