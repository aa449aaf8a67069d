"""The paper's statements as tests on the toy, counterexample and quadratic problems."""

from __future__ import annotations

import pytest
import torch

import core
from core.problems import Counterexample, Quadratic, Toy

from .helpers import F64, Logistic, rel_err

GAMMA, T = 0.1, 100


def test_prop31_bound_holds_for_every_K_on_toy():
    p = Toy()
    lam = torch.tensor([1.0, 1.0], dtype=F64)
    dyn = core.GradientDescent(steps=T, lr=GAMMA)
    exact = core.hypergradient(p, lam, dyn, core.Full())
    errors = []
    for K in range(1, T + 1):
        h = core.hypergradient(p, lam, dyn, core.Truncated(K))
        err = float((h.grad - exact.grad).norm())
        # Section 4.1: α = 1/2, M_B = ||γG|| = γ.
        bound = core.prop31_bound(K, GAMMA, p.alpha, h.info["grad_w_norm"], M_B=GAMMA)
        assert err <= bound * (1 + 1e-12), (K, err, bound)
        errors.append(err)
    # the error itself decays geometrically: (1 - γα)^K at least
    assert errors[49] < errors[0] * (1 - GAMMA * p.alpha) ** 49


@pytest.mark.parametrize("K", [1, 5, 20])
def test_prop36_truncated_equals_neumann_series_once_converged(K):
    p = Logistic()
    lam = torch.full((5,), -1.0, dtype=F64)
    dyn = core.GradientDescent(steps=600, lr=0.5)  # w_t has converged to float precision
    h = core.hypergradient(p, lam, dyn, core.Truncated(K))
    neumann = core.hypergradient(p, lam, dyn, core.Implicit(solver="neumann", iters=K))
    assert rel_err(h.grad, neumann.grad) < 1e-9


def test_prop36_does_not_hold_before_convergence():
    # the identity needs w_t at the fixed point: with T small the two differ
    p = Logistic()
    lam = torch.full((5,), -1.0, dtype=F64)
    dyn = core.GradientDescent(steps=8, lr=0.5)
    h = core.hypergradient(p, lam, dyn, core.Truncated(5))
    neumann = core.hypergradient(p, lam, dyn, core.Implicit(solver="neumann", iters=5))
    assert rel_err(h.grad, neumann.grad) > 1e-4


def _fit_toy(biased: bool, K: int, iterations: int):
    p = Toy(biased=biased)
    out = core.fit(
        p,
        p.initial_hparams(),
        core.GradientDescent(steps=T, lr=GAMMA),
        core.Truncated(K),
        iterations=iterations,
        optimizer="sgd",
        schedule="inv_sqrt",
        first_step_norm=0.6,
    )
    exact = p.closed_form(out.hparams, T, GAMMA)[3]
    return out, float(exact.norm())


def test_theorem34_one_step_truncation_converges_exactly_on_toy():
    _, exact_norm = _fit_toy(biased=False, K=1, iterations=300)
    start = float(Toy().closed_form(Toy().initial_hparams(), T, GAMMA)[3].norm())
    assert exact_norm < 1e-6 * start


def test_figure3_truncation_is_biased_on_f_tilde_and_bias_shrinks_with_K():
    norms = [_fit_toy(biased=True, K=K, iterations=300)[1] for K in (1, 5, 25, 100)]
    assert norms[0] > 1.0  # K=1 stalls far from a stationary point
    assert norms[0] > norms[1] > norms[2] > norms[3]
    assert norms[3] < 1e-6  # full back-propagation (K=T) converges


def test_theorem35_counterexample_one_step_misses_stationary_point():
    p = Counterexample(lam0=2.0, w0=1.0)
    steps, lr = 5, 0.5
    dyn = core.GradientDescent(steps=steps, lr=lr)
    kw = dict(iterations=400, optimizer="sgd", lr=0.5, schedule="constant")
    one = core.fit(p, p.initial_hparams(), dyn, core.Truncated(K=1), **kw)
    full = core.fit(p, p.initial_hparams(), dyn, core.Full(), **kw)
    lam1, lamf = float(one.hparams), float(full.hparams)
    # 1-RMD converges to the zero of h_{T-1}, where d_λ f is far from zero ...
    assert lam1 == pytest.approx(p.fixed_point(steps, lr, K=1), abs=1e-9)
    assert abs(p.exact_grad(lam1, steps, lr)) > 0.1
    # ... while full RMD reaches the stationary point.
    assert lamf == pytest.approx(p.fixed_point(steps, lr), abs=1e-9)
    assert abs(p.exact_grad(lamf, steps, lr)) < 1e-9


def test_lemma32_descent_ratio_stays_positive_along_K1_trajectory():
    p = Toy()
    out = core.fit(
        p,
        p.initial_hparams(),
        core.GradientDescent(steps=T, lr=GAMMA),
        core.Truncated(1),
        iterations=60,
        optimizer="sgd",
        schedule="inv_sqrt",
        first_step_norm=0.6,
        exact_every=1,
    )
    ratios = out.history["descent_ratio"]
    finite = [r for r in ratios if r == r]
    assert len(finite) > 10
    assert min(finite) > 0.05


@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_jacobian_norms_match_the_quadratics_closed_form(momentum):
    # A_t of an affine step is constant: I - γH, or the heavy-ball block matrix on (w, v)
    p = Quadratic(dim=6, n_hparams=2, mu=0.5, L=30.0)
    dyn = core.GradientDescent(steps=4, lr=GAMMA, momentum=momentum)
    eye = torch.eye(6, dtype=F64)
    A = eye - GAMMA * p.H
    if momentum:
        A = torch.cat(
            [torch.cat([A, -GAMMA * momentum * eye], 1), torch.cat([p.H, momentum * eye], 1)]
        )
    norms = core.jacobian_norms(p, torch.zeros(2, dtype=F64), dyn, iters=100)
    assert list(norms) == [1, 2, 3, 4]
    expected = float(torch.linalg.matrix_norm(A, ord=2))
    assert expected > 1  # γL = 3 > 2: past the stability edge
    for t, n in norms.items():
        assert n == pytest.approx(expected, rel=1e-9), t


def test_jacobian_norms_are_below_one_minus_gamma_mu_inside_prop31s_step_size():
    # γ <= 1/β and α-strong convexity: ||A_t|| = 1 - γα, the contraction Prop. 3.1 uses
    p = Quadratic(dim=6, n_hparams=2, mu=0.5, L=5.0)
    dyn = core.GradientDescent(steps=3, lr=1 / 5.0)
    norms = core.jacobian_norms(p, torch.zeros(2, dtype=F64), dyn, steps=[2], iters=200)
    assert norms[2] == pytest.approx(1 - 0.5 / 5.0, rel=1e-6)


def test_jacobian_norms_bound_the_explicit_jacobian_from_below_on_a_nonlinear_step():
    p = Logistic()
    lam = torch.full((5,), -1.0, dtype=F64)
    dyn = core.GradientDescent(steps=5, lr=2.0)
    norms = core.jacobian_norms(p, lam, dyn, steps=[1, 5], iters=60)
    state, spec = dyn.init_state(p, lam)
    for t in range(1, 6):
        if t in norms:

            def step(w):
                return dyn.step(p, (w,), lam, spec, create_graph=True)[0]

            J = torch.autograd.functional.jacobian(step, state[0].detach())
            exact = float(torch.linalg.matrix_norm(J.reshape(J.shape[0], -1), ord=2))
            assert norms[t] <= exact * (1 + 1e-9)
            assert norms[t] == pytest.approx(exact, rel=1e-6), t
        state = dyn.step(p, state, lam, spec, create_graph=False)


def test_jacobian_norms_reject_steps_outside_the_unroll_and_bad_iters():
    p = Quadratic()
    dyn = core.GradientDescent(steps=3, lr=GAMMA)
    hp = torch.zeros(3, dtype=F64)
    with pytest.raises(core.ConfigurationError, match=r"1\.\.T=3, got \[0, 2\]"):
        core.jacobian_norms(p, hp, dyn, steps=[2, 0])
    with pytest.raises(core.ConfigurationError, match="iters must be an integer >= 1, got 0"):
        core.jacobian_norms(p, hp, dyn, iters=0)
