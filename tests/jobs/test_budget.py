"""The compute budget estimated from a spec: work and the stored graph's memory."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from jobs import field_errors, parse_spec
from jobs.specs.budget import BudgetLimits, budget_errors, check_budget, estimate
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
