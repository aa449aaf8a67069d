"""Single-loop methods and warm-started K-RMD as service jobs: traces, checkpoints, resume."""

from __future__ import annotations

import copy
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import update

from jobs.specs.job import parse_spec
from jobs.store import repo
from jobs.store.models import Job, utcnow
from tests.factories import example, queued_job, tiny_spec
from worker.runner import execute_job

from .test_runner import SETTINGS, _Crash, _hparams, _trace

# each job kind this file runs: the hypergradient section and the inner section's extras
KINDS = {
    "soba": ({"method": "soba"}, {}),
    "saba": ({"method": "saba"}, {}),
    "f2sa": ({"method": "f2sa", "penalty_growth": 1.0, "penalty_max": 100.0}, {}),
    "truncated_warm": ({"method": "truncated", "K": 2}, {"warm_start": True, "steps": 4}),
}


# the same on the built-in hypercleaning kind, on minibatches of both levels
BATCHED = {
    "soba_batches": ({"method": "soba"}, {}),
    "saba_batches": ({"method": "saba"}, {}),
    "truncated_warm_batches": (
        {"method": "truncated", "K": 2},
        {"warm_start": True, "steps": 3},
    ),
}


def _batched(kind: str, iterations: int = 23) -> dict:
    """Hypercleaning on 120 digits: 6 training batches of 20, 4 validation batches of 15."""
    hypergradient, inner = BATCHED[kind]
    spec = copy.deepcopy(example("hypercleaning"))
    spec["problem"].update(n_train=120, n_val=60)
    spec["inner"].update({"steps": 2, "lr": 0.5, "batch_size": 20, **inner})
    spec["outer"].update(iterations=iterations, batch_size=15, lr=0.05)
    spec["hypergradient"] = dict(hypergradient)
    spec["diagnostics"]["every"] = 0
    spec["device"] = "cpu"
    return spec


def _spec(kind: str, iterations: int = 23) -> dict:
    if kind in BATCHED:
        return _batched(kind, iterations)
    hypergradient, inner = KINDS[kind]
    spec = tiny_spec(iterations=iterations)
    spec["hypergradient"] = dict(hypergradient)
    spec["inner"].update(inner)
    spec["diagnostics"]["every"] = 0
    if kind == "saba":
        spec["outer"]["schedule"] = "constant"  # SABA's steps are constant
    return spec


@pytest.mark.parametrize("kind", sorted(KINDS) + sorted(BATCHED))
def test_a_killed_job_resumes_exactly(sessions, kind):
    spec = _spec(kind)
    reference = queued_job(sessions, spec)
    assert execute_job(sessions, reference, SETTINGS) == "succeeded"
    job_id = queued_job(sessions, spec)

    def crash(record):
        if record["iteration"] == 13:
            raise _Crash

    with pytest.raises(_Crash):
        execute_job(sessions, job_id, SETTINGS, on_record=crash)
    with sessions() as s:
        assert repo.load_artifact(s, job_id, "checkpoint").iteration == 10
    with sessions.begin() as s:
        s.execute(update(Job).where(Job.id == job_id).values(lease_until=utcnow() - timedelta(1)))
    with sessions.begin() as s:
        assert job_id in [j.id for j in repo.reap(s)]
    assert execute_job(sessions, job_id, SETTINGS, worker="other") == "succeeded"

    got, want = _trace(sessions, job_id), _trace(sessions, reference)
    assert got["iteration"] == list(range(1, 24))
    assert got["outer_loss"] == want["outer_loss"]  # bit-identical continuation
    np.testing.assert_array_equal(
        _hparams(sessions, job_id)["hparams"], _hparams(sessions, reference)["hparams"]
    )


def test_a_single_loop_job_with_exact_diagnostics_fails_naming_the_field(sessions):
    spec = _spec("soba")
    spec["diagnostics"]["every"] = 5
    job_id = queued_job(sessions, spec)
    assert execute_job(sessions, job_id, SETTINGS) == "failed"
    with sessions() as s:
        error = s.get(Job, job_id).error
    assert "diagnostics.every" in error["detail"]


def test_saba_with_a_decreasing_schedule_fails_naming_the_field(sessions):
    spec = _spec("saba")
    spec["outer"]["schedule"] = "inv_sqrt"
    job_id = queued_job(sessions, spec)
    assert execute_job(sessions, job_id, SETTINGS) == "failed"
    with sessions() as s:
        assert "outer.schedule must be 'constant'" in s.get(Job, job_id).error["detail"]


def test_single_loop_methods_and_warm_start_are_spec_fields():
    spec = parse_spec(_spec("f2sa"))
    assert spec.hypergradient.method == "f2sa" and spec.hypergradient.penalty_max == 100.0
    assert parse_spec(_spec("truncated_warm")).inner.warm_start is True


def test_batch_sizes_reach_the_built_in_problem():
    """inner.batch_size and outer.batch_size cut hypercleaning's splits (not full batch)."""
    from worker.build import build

    built = build(parse_spec(_batched("soba_batches")))
    problem = built.problem
    assert (problem.n_batches("inner"), problem.n_batches("outer")) == (6, 4)
    rows = [problem.on_batch("inner", i).x_train.shape[0] for i in range(6)]
    assert rows == [20] * 6
    assert problem.at_step(0).x_train.shape[0] == 20  # K-RMD's steps read one batch too
    assert problem.on_batch("outer", 3).x_val.shape[0] == 15


def test_the_budgets_saba_memory_is_what_saba_keeps():
    """The closed form of jobs.specs.budget counts the floats of SABA's real state."""
    import torch

    import core
    from core.tree import flatten
    from jobs.specs.budget import n_batches, saba_memory
    from worker.build import build

    spec = parse_spec(_batched("saba_batches"))
    built = build(spec)
    problem, lam = built.problem, built.hparams
    w, w_spec = flatten(problem.init(lam))
    leaves, h_spec = flatten(lam)
    state = core.SABA().start(problem, w, leaves, (w_spec, h_spec))
    kept = sum(
        x.numel()
        for key, value in state.items()
        if key.startswith(("mem_", "avg_"))
        for x in ([t for slot in value for t in slot] if key.startswith("mem_") else value)
        if isinstance(x, torch.Tensor)
    )
    n_w, n_lam = sum(x.numel() for x in w), sum(x.numel() for x in leaves)
    assert kept == saba_memory(n_w, n_lam, *n_batches(spec))
