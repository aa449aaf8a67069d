"""Each job's cost (seconds per hyper-iteration, peak hypergradient memory) and auto-K."""

from __future__ import annotations

import torch

import core
from core.problems.quadratic import Quadratic
from jobs.store import repo
from jobs.store.models import Job
from tests.factories import example, queued_job, tiny_spec
from worker.runner import execute_job
from worker.settings import WorkerSettings

SETTINGS = WorkerSettings(flush_every_s=0.01, checkpoint_every_n=5, lease_s=30)


def _quadratic(method: dict, iterations: int = 6) -> dict:
    spec = example("quadratic")
    spec["inner"] = {"steps": 30, "lr": 0.5}
    spec["hypergradient"] = method
    spec["outer"]["iterations"] = iterations
    spec["diagnostics"] = {"every": 0}
    return spec


def _run(sessions, spec):
    job_id = queued_job(sessions, spec)
    assert execute_job(sessions, job_id, SETTINGS) == "succeeded"
    with sessions() as s:
        job = s.get(Job, job_id)
        return job.summary, repo.trace_columns(s, job_id)


def test_summary_and_trace_carry_seconds_per_iteration_and_peak_memory(sessions):
    summary, trace = _run(sessions, tiny_spec(iterations=8))
    times = trace["time_s"]
    assert summary["s_per_iteration"] == sum(times) / len(times)
    assert summary["peak_bytes"] == max(trace["peak_bytes"])
    assert all(p > 0 for p in trace["peak_bytes"])


def test_recorded_memory_grows_by_one_step_per_unit_of_K(sessions):
    peaks = [
        _run(sessions, _quadratic({"method": "truncated", "K": K}))[0]["peak_bytes"]
        for K in (2, 3, 4)
    ]
    assert peaks[2] - peaks[1] == peaks[1] - peaks[0] > 0


def test_auto_records_the_K_it_chose_and_the_bound(sessions):
    spec = _quadratic({"method": "auto", "memory_mb": 1.0})
    p = spec["problem"]
    problem = Quadratic(dim=p["dim"], n_hparams=p["n_hparams"], mu=p["mu"], L=p["L"],
                        seed=p["seed"])  # fmt: skip
    lam, dyn = problem.initial_hparams(), core.GradientDescent(steps=30, lr=0.5)
    base, step = core.step_bytes(problem, lam, dyn)
    k = 7
    spec["hypergradient"]["memory_mb"] = (base + k * step) / (1 << 20)
    summary, trace = _run(sessions, spec)
    auto = summary["auto_k"]
    assert auto["K"] == k and auto["method"] == "truncated"
    assert auto["bound"] is not None and auto["contraction"] < 1
    assert max(trace["peak_bytes"]) <= base + k * step
    exact = problem.exact_hypergradient(lam, dyn)
    h = core.Truncated(k)(problem, lam, dyn).grad
    assert float(torch.linalg.norm(h - exact)) <= auto["bound"]
