"""The families over a user's data set: hypergradients against central finite differences,
minibatches that replay, and the closed-form inner gradient against autograd."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits

import core
from core.problems import MLP, FeatureRegularization, Splits, minibatch
from core.tree import flatten, to_vector
from tests.core.helpers import F64, central_differences, rel_err


def _split(x, y, n_train, n_val, n_test=20, seed=0):
    order = np.random.default_rng(seed).permutation(len(y))
    a, b = n_train, n_train + n_val
    parts = {"train": order[:a], "val": order[a:b], "test": order[b : b + n_test]}
    arrays = {}
    for name, idx in parts.items():
        arrays[f"x_{name}"], arrays[f"y_{name}"] = x[idx], y[idx]
    return Splits.from_arrays(arrays, dtype=F64)


def digits(n_train=30, n_val=30, classes=3):
    bunch = load_digits()
    keep = bunch.target < classes
    x = bunch.data[keep][:, ::4]  # 16 features keep finite differences quick
    return _split(x, bunch.target[keep].astype(np.int64), n_train, n_val)


def diabetes(n_train=40, n_val=30):
    bunch = load_diabetes()
    return _split(bunch.data, bunch.target.astype(np.float64), n_train, n_val)


def cancer(n_train=40, n_val=30):
    bunch = load_breast_cancer()
    return _split(bunch.data[:, :8], bunch.target.astype(np.int64), n_train, n_val)


def _problems(batch_size=None):
    return {
        "linear": FeatureRegularization(diabetes(), batch_size=batch_size, init_penalty=0.05),
        "logistic": FeatureRegularization(cancer(), batch_size=batch_size, init_penalty=0.05),
        "softmax": FeatureRegularization(digits(), batch_size=batch_size, init_penalty=0.05),
        "softmax_groups": FeatureRegularization(
            digits(), groups=[j % 3 for j in range(16)], batch_size=batch_size, init_penalty=0.05
        ),
        "mlp_classifier": MLP(digits(), hidden=(4,), example_weights=True, batch_size=batch_size),
        "mlp_regressor": MLP(diabetes(), hidden=(3, 3), batch_size=batch_size),
    }


def _perturbed(problem):
    """Start away from the uniform initial point so that every coordinate matters."""
    gen = torch.Generator().manual_seed(1)
    return {
        k: v + 0.3 * torch.randn(v.shape, generator=gen, dtype=v.dtype)
        for k, v in problem.initial_hparams().items()
    }


ESTIMATORS = {
    "full": lambda T: core.Full(),
    "truncated_K_eq_T": lambda T: core.Truncated(K=T),
    "forward": lambda T: core.Forward(),
}


@pytest.mark.parametrize("method", sorted(ESTIMATORS))
@pytest.mark.parametrize("name", sorted(_problems()))
def test_hypergradient_matches_central_differences(name, method):
    problem = _problems()[name]
    dyn = core.GradientDescent(steps=8, lr=0.3)
    lam = _perturbed(problem)
    res = core.hypergradient(problem, lam, dyn, ESTIMATORS[method](8))
    fd = central_differences(problem, lam, dyn, eps=1e-6)
    assert rel_err(to_vector(flatten(res.grad)[0]), fd) < 1e-6


@pytest.mark.parametrize("name", sorted(_problems(batch_size=7)))
def test_minibatch_hypergradient_matches_differences_and_truncated_equals_full(name):
    problem = _problems(batch_size=7)[name]
    dyn = core.GradientDescent(steps=9, lr=0.3)
    lam = _perturbed(problem)
    full = core.hypergradient(problem, lam, dyn, core.Full())
    trunc = core.hypergradient(problem, lam, dyn, core.Truncated(K=9))
    fwd = core.hypergradient(problem, lam, dyn, core.Forward())
    assert rel_err(trunc.grad, full.grad) < 1e-12
    assert rel_err(fwd.grad, full.grad) < 1e-9
    fd = central_differences(problem, lam, dyn, eps=1e-6)
    assert rel_err(to_vector(flatten(full.grad)[0]), fd) < 1e-6


def test_minibatches_differ_from_full_batch():
    # the batches really change the unroll: otherwise the tests above prove nothing
    lam = _perturbed(_problems()["softmax"])
    dyn = core.GradientDescent(steps=9, lr=0.3)
    whole = core.hypergradient(_problems()["softmax"], lam, dyn, core.Full())
    batched = core.hypergradient(_problems(batch_size=7)["softmax"], lam, dyn, core.Full())
    assert rel_err(batched.grad, whole.grad) > 1e-3


@pytest.mark.parametrize("name", ["linear", "logistic", "softmax", "softmax_groups"])
def test_closed_form_inner_gradient_equals_autograd(name):
    problem = _problems(batch_size=7)[name].at_step(3)
    lam = _perturbed(problem)
    gen = torch.Generator().manual_seed(2)
    w = torch.randn(problem.init(lam).shape, generator=gen, dtype=F64).requires_grad_(True)
    (auto,) = torch.autograd.grad(problem.inner_loss(w, lam), w)
    assert torch.allclose(problem.inner_grad(w, lam), auto, rtol=1e-12, atol=1e-14)


def test_minibatches_cover_each_epoch_once_and_depend_only_on_seed_and_step():
    n, b = 23, 5
    epoch = torch.cat([minibatch(n, b, seed=4, t=t) for t in range(5)])
    assert sorted(epoch.tolist()) == list(range(n))
    assert torch.equal(minibatch(n, b, 4, 7), minibatch(n, b, 4, 7))
    assert not torch.equal(minibatch(n, b, 4, 0), minibatch(n, b, 5, 0))
    assert not torch.equal(minibatch(n, b, 4, 0), minibatch(n, b, 4, 5))  # the next epoch


def test_resumed_fit_replays_the_same_batches_bit_identically():
    problem = _problems(batch_size=7)["mlp_classifier"]
    dyn = core.GradientDescent(steps=6, lr=0.3)
    kw = dict(iterations=6, optimizer="adam", lr=0.05)
    whole = core.fit(problem, problem.initial_hparams(), dyn, core.Truncated(K=3), **kw)
    half = core.fit(
        problem, problem.initial_hparams(), dyn, core.Truncated(K=3), **{**kw, "iterations": 3}
    )
    # a fresh problem object, as a resumed job builds one from its spec
    again = _problems(batch_size=7)["mlp_classifier"]
    rest = core.fit(
        again, problem.initial_hparams(), dyn, core.Truncated(K=3), state=half.state, **kw
    )
    assert rest.history["outer_loss"] == whole.history["outer_loss"]
    for key, value in whole.hparams.items():
        assert torch.equal(rest.hparams[key], value), key


def test_metrics_name_each_split():
    reg, clf = _problems()["linear"], _problems()["softmax"]
    lam = reg.initial_hparams()
    w = core.hypergradient(reg, lam, core.GradientDescent(5, lr=0.3), core.Full()).params
    assert {"train_rmse", "val_rmse", "test_rmse", "val_loss"} <= set(reg.metrics(w, lam))
    lam = clf.initial_hparams()
    w = core.hypergradient(clf, lam, core.GradientDescent(5, lr=0.3), core.Full()).params
    assert {"train_acc", "val_acc", "test_acc"} <= set(clf.metrics(w, lam))


def test_a_model_that_does_not_fit_the_data_is_refused_by_name():
    with pytest.raises(core.ConfigurationError, match="model 'logistic' does not fit"):
        FeatureRegularization(digits(), model="logistic")
    with pytest.raises(core.ConfigurationError, match="hidden must be"):
        MLP(digits(), hidden=())


def test_labels_outside_the_training_classes_are_refused():
    arrays = {
        "x_train": np.zeros((4, 2)), "y_train": np.array([0, 1, 0, 1]),
        "x_val": np.zeros((2, 2)), "y_val": np.array([0, 2]),
    }  # fmt: skip
    with pytest.raises(core.ConfigurationError, match="y_val has labels in"):
        Splits.from_arrays(arrays)
