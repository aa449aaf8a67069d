"""Exact estimators against closed forms and finite differences (float64)."""

from __future__ import annotations

import copy

import pytest
import torch

import core
from core.problems import Quadratic, Toy

from .helpers import F64, LearnedLrToy, Logistic, central_differences, rel_err

EXACT = [
    core.Full(),
    core.Forward(),
    core.Forward(chunk=2),
    core.Checkpointed(),
    core.Checkpointed(segment=1),
    core.Checkpointed(segment=7),
    core.Checkpointed(segment=1000),
]

QUADRATICS = {
    "plain": dict(),
    "direct-term": dict(rho=0.3),
    "init-depends": dict(init_depends_on_hparams=True, rho=0.1),
    "structured": dict(structured=True, init_depends_on_hparams=True),
}


@pytest.mark.parametrize("estimator", EXACT, ids=repr)
@pytest.mark.parametrize("kind", QUADRATICS)
@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_exact_estimators_match_quadratic_closed_form(estimator, kind, momentum):
    q = Quadratic(dim=6, n_hparams=3, seed=1, **QUADRATICS[kind])
    lam = q.as_hparams(torch.tensor([0.5, -1.0, 2.0], dtype=F64))
    dyn = core.GradientDescent(steps=30, lr=0.7, momentum=momentum)
    res = core.hypergradient(q, lam, dyn, estimator)
    assert rel_err(res.grad, q.exact_hypergradient(lam, dyn)) < 1e-10


@pytest.mark.parametrize("estimator", EXACT, ids=repr)
def test_exact_estimators_match_finite_differences_on_toy(estimator):
    p = Toy()
    lam = torch.tensor([1.0, 1.0], dtype=F64)
    dyn = core.GradientDescent(steps=100, lr=0.1)
    res = core.hypergradient(p, lam, dyn, estimator)
    assert rel_err(res.grad, central_differences(p, lam, dyn)) < 1e-6
    assert rel_err(res.grad, p.closed_form(lam, 100, 0.1)[3]) < 1e-12


@pytest.mark.parametrize("estimator", EXACT[:4], ids=repr)
@pytest.mark.parametrize("momentum", [0.0, 0.6])
def test_learned_step_size_and_init_match_finite_differences(estimator, momentum):
    p = LearnedLrToy()
    lam = p.hparams()
    dyn = core.GradientDescent(steps=40, lr=0.1, momentum=momentum, lr_key="log_lr")
    res = core.hypergradient(p, lam, dyn, estimator)
    fd = central_differences(p, lam, dyn)
    got = torch.cat([res.grad[k].reshape(-1) for k in lam])
    assert float((got - fd).norm() / fd.norm()) < 1e-6
    assert float(res.grad["log_lr"]) != 0.0  # the step size really is differentiated


@pytest.mark.parametrize("store", ["graph", "iterates"])
@pytest.mark.parametrize("K", [1, 3, 17, 100])
def test_truncated_matches_closed_form_of_eq8(store, K):
    p = Toy(biased=True)
    lam = torch.tensor([0.4, -0.7], dtype=F64)
    res = core.hypergradient(p, lam, core.GradientDescent(100, lr=0.1), core.Truncated(K, store))
    assert rel_err(res.grad, p.closed_form(lam, 100, 0.1, K=K)[4]) < 1e-12


@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_truncated_iterates_mode_equals_graph_mode(momentum):
    p = Logistic()
    lam = torch.full((5,), -1.0, dtype=F64)
    dyn = core.GradientDescent(steps=50, lr=0.5, momentum=momentum)
    a = core.hypergradient(p, lam, dyn, core.Truncated(10, store="graph"))
    b = core.hypergradient(p, lam, dyn, core.Truncated(10, store="iterates"))
    assert rel_err(b.grad, a.grad) < 1e-13


def test_exact_methods_agree_with_each_other_on_nonquadratic_problem():
    p = Logistic()
    lam = torch.linspace(-2, 0, 5, dtype=F64)
    dyn = core.GradientDescent(steps=60, lr=0.5, momentum=0.3)
    grads = [core.hypergradient(p, lam, dyn, e).grad for e in EXACT]
    for g in grads[1:]:
        assert rel_err(g, grads[0]) < 1e-10
    assert rel_err(grads[0], central_differences(p, lam, dyn)) < 1e-6


def test_truncated_with_K_equal_T_equals_full_when_init_is_constant():
    q = Quadratic(dim=6, n_hparams=3, seed=2, rho=0.2)
    lam = torch.tensor([0.1, 0.2, -0.3], dtype=F64)
    dyn = core.GradientDescent(steps=25, lr=0.5, momentum=0.4)
    full = core.hypergradient(q, lam, dyn, core.Full())
    for store in ("graph", "iterates"):
        trunc = core.hypergradient(q, lam, dyn, core.Truncated(K=25, store=store))
        assert rel_err(trunc.grad, full.grad) < 1e-12


def test_truncated_with_K_equal_T_leaves_out_the_B0_term():
    q = Quadratic(dim=6, n_hparams=3, seed=2, init_depends_on_hparams=True)
    lam = torch.tensor([0.1, 0.2, -0.3], dtype=F64)
    dyn = core.GradientDescent(steps=25, lr=0.5)
    trunc = core.hypergradient(q, lam, dyn, core.Truncated(K=25))
    full = core.hypergradient(q, lam, dyn, core.Full())
    # The same trajectory from a constant w_0 (the value w_0 takes at this λ) has B_0 = 0.
    frozen = copy.copy(q)
    frozen.w_init = q.w_init + q.P @ lam
    frozen.P = torch.zeros_like(q.P)
    assert rel_err(trunc.grad, frozen.exact_hypergradient(lam, dyn)) < 1e-10
    assert rel_err(trunc.grad, full.grad) > 1e-3


def test_implicit_approaches_full_as_T_grows():
    q = Quadratic(dim=8, n_hparams=3, seed=3, mu=0.1, rho=0.1)
    lam = torch.tensor([1.0, -0.5, 0.2], dtype=F64)
    limit = q.implicit_hypergradient(lam)
    gaps = []
    for T in (10, 40, 160, 640):
        dyn = core.GradientDescent(steps=T, lr=0.9)
        full = core.hypergradient(q, lam, dyn, core.Full()).grad
        imp = core.hypergradient(q, lam, dyn, core.Implicit(solver="cg", iters=50, tol=1e-12))
        assert imp.info["converged"]
        gaps.append(rel_err(imp.grad, full))
    assert all(a > b for a, b in zip(gaps, gaps[1:])), gaps
    assert gaps[-1] < 1e-10
    assert rel_err(imp.grad, limit) < 1e-10


def test_implicit_cg_reports_nonconvergence_and_strict_raises():
    q = Quadratic(dim=20, n_hparams=2, seed=4, mu=1e-3)
    lam = torch.tensor([1.0, 2.0], dtype=F64)
    dyn = core.GradientDescent(steps=50, lr=0.9)
    res = core.hypergradient(q, lam, dyn, core.Implicit(solver="cg", iters=2, tol=1e-12))
    assert res.info["converged"] is False
    assert res.info["iters"] == 2 and res.info["residual"] > 1e-12
    with pytest.raises(core.NonConvergenceError, match="residual") as exc:
        core.hypergradient(q, lam, dyn, core.Implicit(solver="cg", iters=2, strict=True))
    assert exc.value.iters == 2


def test_closed_form_inner_grad_agrees_with_autograd():
    p = Toy()
    w = torch.tensor([0.3, -1.2], dtype=F64, requires_grad=True)
    lam = torch.tensor([1.0, 2.0], dtype=F64)
    (auto,) = torch.autograd.grad(p.inner_loss(w, lam), w)
    assert torch.allclose(p.inner_grad(w, lam), auto, rtol=0, atol=1e-15)
