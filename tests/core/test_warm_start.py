"""Warm starts and stochastic K-RMD in ``core.fit``; the hypercleaning problem's batches."""

from __future__ import annotations

import io

import pytest
import torch

import core
from core.problems import Hypercleaning, Quadratic

DYN = core.GradientDescent(steps=5, lr=0.3)


def _digits(**kw):
    return Hypercleaning(*_splits(), **kw)


def _splits():
    p = Hypercleaning.from_dataset("digits", n_train=120, n_val=60, dtype=torch.float64)
    strip = slice(None, -1)  # the constructor adds the bias column again
    return (p.x_train[:, strip], p.y_train, p.x_val[:, strip], p.y_val)


def test_each_hyper_iteration_starts_from_the_previous_w_T():
    p = Quadratic(dim=6, n_hparams=3, seed=2)
    est = core.Truncated(K=2)
    seen = []
    out = core.fit(
        p, p.initial_hparams(), DYN, est, iterations=2, optimizer="sgd", lr=0.1,
        warm_start=True, callback=lambda rec, st: seen.append(st),
    )  # fmt: skip
    first = core.hypergradient(p, p.initial_hparams(), DYN, est)
    torch.testing.assert_close(seen[0].extra["inner_params"], first.params, rtol=0, atol=0)
    # the second unroll: T steps of gradient descent from w_T of the first, at λ_2
    w = first.params.clone()
    lam2 = seen[0].hparams
    H, Phi, b = p.H, p.Phi, p.b
    for _ in range(DYN.steps):
        w = w - DYN.lr * (H @ w - (Phi @ lam2 + b))
    torch.testing.assert_close(out.state.extra["inner_params"], w, rtol=1e-12, atol=1e-12)


def test_warm_started_k_rmd_approaches_the_implicit_hypergradient():
    # after many warm-started hyper-iterations at a fixed λ the iterate sits at w*(λ), and
    # h_{T-K} is the K-term Neumann series of Eq. (11) (Prop. 3.6): with K = T = 60 it is
    # within (1-γμ)^K of the implicit hypergradient
    p = Quadratic(dim=6, n_hparams=3, mu=0.5, L=1.0, seed=1)
    dyn = core.GradientDescent(steps=60, lr=0.9)
    lam = p.initial_hparams() + 0.3
    seen = []
    core.fit(
        p, lam, dyn, core.Truncated(K=60), iterations=3, optimizer="sgd", lr=1e-300,
        warm_start=True, callback=lambda rec, st: seen.append(st),
    )  # fmt: skip
    view = core.warm_start.hyper_iteration(p, fresh_batches=False)
    view.point(4, dyn.steps, seen[-1].extra["inner_params"], False, 0)
    h = core.hypergradient(view, lam, dyn, core.Truncated(K=60)).grad
    exact = p.implicit_hypergradient(lam)
    assert float((h - exact).norm()) < 1e-10


def test_warm_started_stochastic_run_resumes_bit_identically():
    p = _digits(batch_size=16, val_batch_size=20, seed=3)
    kw = dict(optimizer="adam", lr=0.05, warm_start=True, outer_batches=True,
              inner_schedule="inv_sqrt", seed=5)  # fmt: skip
    whole = core.fit(p, p.initial_hparams(), DYN, core.Truncated(K=2), iterations=8, **kw)
    half = core.fit(p, p.initial_hparams(), DYN, core.Truncated(K=2), iterations=3, **kw)
    buf = io.BytesIO()
    torch.save(half.state.state_dict(), buf)
    buf.seek(0)
    state = core.FitState.from_state_dict(torch.load(buf, weights_only=True))
    rest = core.fit(
        p, p.initial_hparams(), DYN, core.Truncated(K=2), iterations=8, state=state, **kw
    )
    assert torch.equal(rest.hparams, whole.hparams)
    assert torch.equal(rest.state.extra["inner_params"], whole.state.extra["inner_params"])
    assert rest.history["outer_loss"] == whole.history["outer_loss"]


def test_hypercleaning_batches_average_to_the_full_objectives():
    p = _digits(batch_size=30, val_batch_size=20)  # 120 = 4 x 30, 60 = 3 x 20
    assert (p.n_batches("inner"), p.n_batches("outer")) == (4, 3)
    gen = torch.Generator().manual_seed(0)
    W = torch.randn(p.n_classes, p.x_train.shape[1], generator=gen, dtype=torch.float64)
    lam = torch.randn(120, generator=gen, dtype=torch.float64)
    inner = torch.stack([p.on_batch("inner", i).inner_loss(W, lam) for i in range(4)]).mean()
    outer = torch.stack([p.on_batch("outer", j).outer_loss(W, lam) for j in range(3)]).mean()
    torch.testing.assert_close(inner, p.inner_loss(W, lam), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(outer, p.outer_loss(W, lam), rtol=1e-12, atol=1e-12)


def test_hypercleaning_batch_closed_form_gradient_matches_autograd():
    p = _digits(batch_size=32).on_batch("inner", 1)
    W = torch.randn(p.n_classes, p.x_train.shape[1], dtype=torch.float64, requires_grad=True)
    lam = torch.randn(120, dtype=torch.float64)
    (auto,) = torch.autograd.grad(p.inner_loss(W, lam), W)
    torch.testing.assert_close(p.inner_grad(W.detach(), lam), auto, rtol=1e-10, atol=1e-12)


def test_unknown_inner_schedule_is_named():
    p = Quadratic()
    with pytest.raises(core.ConfigurationError, match="inner_schedule must be one of"):
        core.fit(p, p.initial_hparams(), DYN, core.Full(), iterations=1, inner_schedule="cos")
