"""The compute budget estimated from a spec: work and the stored graph's memory."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from jobs import field_errors, parse_spec
from jobs.specs.budget import (
    BudgetLimits,
    budget_errors,
    check_budget,
    estimate,
    n_batches,
    saba_memory,
    sizes,
)
from tests.factories import EXAMPLES, tiny_spec


def _spec(method: dict, steps: int = 100, every: int = 0, **problem):
    spec = tiny_spec(iterations=10, steps=steps)
    spec["hypergradient"] = method
    spec["diagnostics"]["every"] = every
    if problem:
        spec["problem"] = problem
    return parse_spec(spec)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.json")), ids=lambda p: p.stem)
def test_every_example_is_within_the_default_budget(path):
    check_budget(parse_spec(path.read_text()), BudgetLimits())


def test_work_is_steps_times_iterations():
    assert estimate(parse_spec(tiny_spec(iterations=30, steps=7))).inner_steps == 210


def test_the_stored_graph_follows_each_method():
    hc = {"kind": "hypercleaning", "n_train": 1000}
    full = estimate(_spec({"method": "full"}, **hc)).method_bytes
    k10 = estimate(_spec({"method": "truncated", "K": 10}, **hc)).method_bytes
    assert estimate(_spec({"method": "truncated", "K": 100}, **hc)).method_bytes == full
    assert k10 * 10 == full  # K-RMD keeps K of the T steps (Eq. 8)
    assert estimate(_spec({"method": "full"}, steps=200, **hc)).method_bytes == 2 * full
    iterates = _spec({"method": "truncated", "K": 10, "store": "iterates"}, **hc)
    assert estimate(iterates).method_bytes < k10
    checkpointed = estimate(_spec({"method": "checkpointed"}, **hc)).method_bytes
    assert k10 <= checkpointed < full / 5  # about sqrt(T) steps and sqrt(T) states
    assert estimate(_spec({"method": "implicit"}, **hc)).method_bytes < k10
    mnist = estimate(_spec({"method": "full"}, **hc, dataset="mnist")).method_bytes
    assert mnist > full  # more features per example
    exact = estimate(_spec({"method": "truncated", "K": 1}, every=5, **hc))
    assert exact.exact_bytes == full and exact.graph_bytes == full


def test_each_exceeded_limit_is_reported_at_its_field_with_value_and_limit():
    spec = _spec({"method": "truncated", "K": 50}, steps=100, every=10, kind="quadratic", dim=512)
    limits = BudgetLimits(max_inner_steps=500, max_graph_bytes=estimate(spec).method_bytes - 1)
    with pytest.raises(ValidationError) as exc:
        check_budget(spec, limits)
    errors = {e["field"]: e["message"] for e in field_errors(exc.value)}
    assert list(errors) == ["outer.iterations", "hypergradient.K", "diagnostics.every"]
    assert errors["outer.iterations"].startswith("inner.steps x outer.iterations = 100 x 10")
    assert "over the limit of 500 (max_inner_steps)" in errors["outer.iterations"]
    assert f"({limits.max_graph_bytes} bytes, max_graph_bytes)" in errors["hypergradient.K"]
    assert "got hypergradient.K=50" in errors["hypergradient.K"]
    assert "got diagnostics.every=10" in errors["diagnostics.every"]
    assert budget_errors(spec, BudgetLimits()) == []


def _single_loop(method: dict, inner: int | None = None, outer: int | None = None, **over):
    spec = tiny_spec(iterations=1000, steps=50)
    spec["problem"] = {"kind": "hypercleaning", "n_train": 1000, "n_val": 500}
    spec["hypergradient"] = method
    spec["diagnostics"]["every"] = 0
    spec["inner"]["batch_size"] = inner
    spec["outer"]["batch_size"] = outer
    spec["outer"].update(over)
    return parse_spec(spec)


def test_a_single_loop_method_pays_one_minibatch_step_per_iteration():
    est = estimate(_single_loop({"method": "soba"}, 100, 50))
    # one step per iteration and the final report's unroll, not steps x iterations
    assert est.inner_steps == 1000 + 50
    implicit = estimate(_spec({"method": "implicit"}, steps=50, kind="hypercleaning"))
    assert implicit.inner_steps == 50 * 10
    # the step's graph is that of 100 training rows, not of the 1000
    full_batch = estimate(_single_loop({"method": "soba"}))
    assert est.method_bytes < full_batch.method_bytes
    # the final report runs full RMD through inner.steps over the minibatches
    assert est.report_bytes == 50 * sizes(_single_loop({"method": "soba"}, 100)).step * 8


def test_sabas_memory_is_its_batches_times_its_directions():
    # hypercleaning on digits: W is 10 x 65 (state), one weight per training row (hparams)
    state, hparams = 10 * 65, 1000
    for inner, outer, n_in, n_out in ((100, 50, 10, 10), (10, 500, 100, 1), (None, None, 1, 1)):
        spec = _single_loop({"method": "saba"}, inner, outer)
        assert n_batches(spec) == (n_in, n_out)
        soba = _single_loop({"method": "soba"}, inner, outer)
        extra = estimate(spec).method_bytes - estimate(soba).method_bytes
        # per inner batch ∇_w g_i, ∇²_ww g_i v, ∇²_λw g_i v; per outer batch ∇_w f_j, ∇_λ f_j;
        # and one running mean of each
        closed = (n_in + 1) * (2 * state + hparams) + (n_out + 1) * (state + hparams)
        assert saba_memory(state, hparams, n_in, n_out) == closed
        assert extra == 8 * closed


def test_sabas_memory_over_the_limit_names_the_batch_size():
    spec = _single_loop({"method": "saba"}, 1, 500)
    limits = BudgetLimits(max_graph_bytes=estimate(spec).method_bytes - 1)
    with pytest.raises(ValidationError) as exc:
        check_budget(spec, limits)
    (error,) = field_errors(exc.value)
    assert error["field"] == "inner.batch_size" and "got inner.batch_size=1" in error["message"]


def test_a_single_loop_jobs_steps_over_the_limit_name_the_iterations():
    spec = _single_loop({"method": "soba"}, 100)
    with pytest.raises(ValidationError) as exc:
        check_budget(spec, BudgetLimits(max_inner_steps=1049))
    (error,) = field_errors(exc.value)
    assert error["field"] == "outer.iterations"
    assert error["message"].startswith("outer.iterations + inner.steps = 1000 + 50 = 1050 steps")
