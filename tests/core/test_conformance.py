"""One suite over every registered estimator: structure, purity and errors."""

from __future__ import annotations

import pytest
import torch

import core
from core.problems import Quadratic, Toy

from .helpers import F64

OPTIONS = {
    "full": {},
    "truncated": {"K": 3},
    "forward": {},
    "checkpointed": {},
    "implicit": {"iters": 20},
}
DYN = core.GradientDescent(steps=10, lr=0.5, momentum=0.2)


def test_options_table_covers_the_registry():
    assert set(OPTIONS) == set(core.ESTIMATORS)


@pytest.fixture(params=sorted(OPTIONS))
def estimator(request):
    est = core.make_estimator(request.param, **OPTIONS[request.param])
    assert isinstance(est, core.Estimator) and est.name == request.param
    return est


def test_result_has_the_structure_of_the_inputs(estimator):
    q = Quadratic(dim=5, n_hparams=3, structured=True, init_depends_on_hparams=True)
    lam = q.as_hparams(torch.tensor([0.3, -0.1, 0.7], dtype=F64))
    res = core.hypergradient(q, lam, DYN, estimator)
    assert isinstance(res, core.HypergradientResult)
    assert list(res.grad) == ["a", "b"]
    for k in lam:
        assert res.grad[k].shape == lam[k].shape and res.grad[k].dtype == F64
        assert torch.isfinite(res.grad[k]).all() and not res.grad[k].requires_grad
    assert list(res.params) == ["u", "v"] and res.params["u"].shape == (2,)
    assert isinstance(res.outer_loss, float)
    assert res.info["method"] == estimator.name and res.info["T"] == DYN.steps


def test_inputs_are_not_mutated_and_no_grad_is_written(estimator):
    q = Quadratic(dim=5, n_hparams=3, rho=0.1)
    lam = torch.tensor([0.3, -0.1, 0.7], dtype=F64, requires_grad=True)
    before = lam.detach().clone()
    core.hypergradient(q, lam, DYN, estimator)
    assert torch.equal(lam.detach(), before)
    assert lam.grad is None and lam.requires_grad
    assert not q.H.requires_grad and q.H.grad is None


def test_float32_stays_float32(estimator):
    p = Toy()
    res = core.hypergradient(p, torch.ones(2), core.GradientDescent(20, lr=0.1), estimator)
    assert res.grad.dtype == torch.float32 and res.params.dtype == torch.float32


class _VectorInner(Toy):
    def inner_loss(self, params, hparams):
        return (params - hparams) ** 2  # not a scalar

    inner_grad = None


class _VectorOuter(Toy):
    def outer_loss(self, params, hparams):
        return params**2


class _NanOuter(Toy):
    def outer_loss(self, params, hparams):
        return torch.sum(params) * float("nan")


def test_non_scalar_inner_loss_is_a_configuration_error(estimator):
    with pytest.raises(core.ConfigurationError, match=r"inner_loss must return a scalar.*\(2,\)"):
        core.hypergradient(_VectorInner(), torch.ones(2, dtype=F64), DYN, estimator)


def test_non_scalar_outer_loss_is_a_configuration_error(estimator):
    with pytest.raises(core.ConfigurationError, match=r"outer_loss must return a scalar.*\(2,\)"):
        core.hypergradient(_VectorOuter(), torch.ones(2, dtype=F64), DYN, estimator)


def test_nan_hparams_are_a_divergence_error(estimator):
    lam = torch.tensor([1.0, float("nan")], dtype=F64)
    with pytest.raises(core.DivergenceError, match="hparams"):
        core.hypergradient(Toy(), lam, DYN, estimator)


def test_diverging_inner_optimizer_is_a_divergence_error(estimator):
    dyn = core.GradientDescent(steps=3000, lr=3.0)  # γ > 2/β: gradient descent blows up
    with pytest.raises(core.DivergenceError) as exc:
        core.hypergradient(Toy(), torch.ones(2, dtype=F64), dyn, estimator)
    assert exc.value.where in {"inner iterate w_T", "outer loss", "hypergradient"}


def test_nan_outer_loss_is_a_divergence_error(estimator):
    with pytest.raises(core.DivergenceError, match="outer loss"):
        core.hypergradient(_NanOuter(), torch.ones(2, dtype=F64), DYN, estimator)


@pytest.mark.parametrize(
    ("hparams", "message"),
    [
        ([1.0, 2.0], "hparams must be a tensor or a dict of tensors, got list"),
        (
            torch.ones(2, dtype=torch.int64),
            "must be a floating-point tensor, got dtype torch.int64",
        ),
        ({}, "hparams must not be an empty dict"),
    ],
)
def test_bad_hparams_are_named(estimator, hparams, message):
    with pytest.raises(core.ConfigurationError, match=message):
        core.hypergradient(Toy(), hparams, DYN, estimator)


def test_truncation_depth_is_checked():
    with pytest.raises(core.ConfigurationError, match="K must be an integer >= 1, got 0"):
        core.Truncated(K=0)
    with pytest.raises(ValueError, match=r"K must be in \[1, T=10\], got K=11"):
        core.hypergradient(Toy(), torch.ones(2, dtype=F64), DYN, core.Truncated(K=11))
    with pytest.raises(core.ConfigurationError, match="store must be one of"):
        core.Truncated(K=2, store="disk")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: core.GradientDescent(steps=0), "steps must be an integer >= 1, got 0"),
        (lambda: core.GradientDescent(10, lr=-1.0), "lr must be a finite number > 0, got -1.0"),
        (lambda: core.GradientDescent(10, momentum=1.0), r"momentum must be in \[0, 1\), got 1.0"),
        (lambda: core.Checkpointed(segment=0), "segment must be an integer >= 1"),
        (lambda: core.Forward(chunk=0), "chunk must be an integer >= 1"),
        (lambda: core.Implicit(solver="lu"), "solver must be one of"),
        (lambda: core.Implicit(iters=0), "iters must be an integer >= 1, got 0"),
        (lambda: core.make_estimator("magic"), "method must be one of"),
        (lambda: core.make_estimator("truncated", K=2, depth=3), "bad options"),
    ],
)
def test_bad_arguments_name_the_value(make, message):
    with pytest.raises(core.ConfigurationError, match=message):
        make()


def test_lr_key_requires_that_entry():
    dyn = core.GradientDescent(10, lr=0.1, lr_key="log_lr")
    with pytest.raises(core.ConfigurationError, match="lr_key='log_lr' needs a dict hparams"):
        core.hypergradient(Toy(), torch.ones(2, dtype=F64), dyn, core.Full())


def test_estimator_must_be_an_estimator():
    with pytest.raises(core.ConfigurationError, match="estimator must be a core estimator"):
        core.hypergradient(Toy(), torch.ones(2, dtype=F64), DYN, "full")
