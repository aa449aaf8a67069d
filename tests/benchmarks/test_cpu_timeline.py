"""The load benchmark's CPU attribution: roles by process ancestry, and the slow requests'
share of each role computed from samples whose values are known."""

from __future__ import annotations

import os
import time

import pytest

from benchmarks.service._cpu_timeline import CpuSampler, _role, attribute


def test_a_process_takes_its_nearest_named_ancestors_role():
    table = {1: (0, "init", 0), 10: (1, "python", 0), 11: (10, "python", 0),
             12: (11, "celery", 0), 20: (1, "postgres", 0), 30: (1, "pytest", 0)}  # fmt: skip
    roots = {10: "api", 11: "workers"}
    assert _role(10, table, roots) == "api"
    assert _role(12, table, roots) == "workers"  # the nearest, not the outermost
    assert _role(20, table, roots) == "postgres"
    assert _role(30, table, roots) == "other:pytest"


def _sample(t, cores, runnable, stall=0.5, dt=0.1):
    return {"t": t, "dt": dt, "cores": cores, "runnable": runnable, "stall": stall}


def test_slow_requests_see_the_samples_their_lifetime_overlaps():
    # 0.0-1.0 s: the API alone; 1.0-2.0 s: a foreign compile beside it
    samples = [_sample(round(0.1 * i, 1), {"api": 0.4}, 2) for i in range(1, 11)]
    samples += [_sample(round(1 + 0.1 * i, 1), {"api": 0.2, "other:cc1": 1.8}, 9, 0.9)
                for i in range(1, 11)]  # fmt: skip
    requests = [(0.2, 0.01), (0.5, 0.02), (1.3, 0.2), (1.6, 0.3)]
    lags = [(1.35, 0.04), (1.7, 0.06), (0.3, 0.001)]
    out = attribute(requests, samples, lags, slow_s=0.05)
    assert out["slow"]["requests"] == 2 and out["fast"]["requests"] == 2
    assert out["slow"]["cores"]["other:cc1"] == pytest.approx(1.8)
    assert out["slow"]["cores"]["api"] == pytest.approx(0.2)
    assert out["fast"]["cores"]["api"] == pytest.approx(0.4)
    assert out["fast"]["cores"].get("other:cc1", 0.0) == 0.0
    assert out["slow"]["runnable"] == 9 and out["fast"]["runnable"] == 2
    assert out["slow"]["cpu_stall_share"] == pytest.approx(0.9)
    # the worst lag inside each slow request: 40 ms and 60 ms
    assert out["slow"]["client_loop_lag_ms_mean"] == pytest.approx(50.0)


def test_foreign_commands_beyond_the_top_are_pooled():
    samples = [_sample(1.0, {f"other:p{i}": 0.1 * (i + 1) for i in range(5)}, 3, dt=1.0)]
    out = attribute([(0.5, 0.1)], samples, [], slow_s=0.05, top=2)
    cores = out["slow"]["cores"]
    assert set(cores) == {"other:p4", "other:p3", "other (rest)"}
    assert cores["other (rest)"] == pytest.approx(0.1 + 0.2 + 0.3)


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="reads /proc (Linux)")
def test_the_sampler_sees_a_busy_process_under_its_role(tmp_path):
    sampler = CpuSampler({os.getpid(): "me"}, tmp_path / "cpu.jsonl", interval=0.05)
    sampler.start()
    out = tmp_path / "cpu.jsonl"
    # about one core for 0.6 s, and on until the sampler (a new process, slow to start on a
    # loaded machine) has written three rows
    end, give_up = time.monotonic() + 0.6, time.monotonic() + 30
    while time.monotonic() < end or (
        time.monotonic() < give_up and (not out.exists() or out.read_text().count("\n") < 3)
    ):
        for _ in range(100):
            sum(range(1000))
    rows = sampler.stop()
    assert len(rows) >= 3
    busy = sum(r["cores"].get("me", 0.0) * r["dt"] for r in rows)
    assert busy > 0.1  # CPU seconds booked to this process, however loaded the machine
    assert all(r["runnable"] >= 1 for r in rows)


def test_with_several_client_loops_a_request_sees_only_its_own_loops_lag():
    samples = [_sample(round(0.1 * i, 1), {"api": 0.5}, 2) for i in range(1, 21)]
    # both slow requests span 1.0-1.2 s; loop 2 was late there, loop 1 was not
    requests = [(1.0, 0.2, 1), (1.0, 0.2, 2)]
    lags = [(1.1, 0.08, 2), (1.15, 0.002, 1), (0.5, 0.5, 1)]
    out = attribute(requests, samples, lags, slow_s=0.05)
    assert out["slow"]["requests"] == 2
    assert out["slow"]["client_loop_lag_ms_mean"] == pytest.approx((2.0 + 80.0) / 2)
