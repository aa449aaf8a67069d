"""The poll CPU benchmark runs on a few requests: every poll a 304 of one statement."""

from __future__ import annotations

import json


def test_poll_cpu_reports_cpu_per_304_poll_of_one_statement(pg_server, redis_url, capsys):
    from benchmarks.service import poll_cpu

    argv = ["--requests", "20", "--repeat", "2", "--pg-admin-url", pg_server,
            "--redis-url", redis_url]  # fmt: skip
    assert poll_cpu.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    for route in ("job", "trace"):
        r = report[route]
        assert r["statuses"] == {"304": 40} and r["statements_per_request"] == 1.0
        assert 0 < r["cpu_ms_per_request"] <= r["cpu_ms_per_request_median"]
    assert len(report["loadavg"]) == 3
