"""Data hypercleaning (Section 4.2.1) on small digits instances, float64."""

from __future__ import annotations

import pytest
import torch

import core
from core.problems.hypercleaning import THRESHOLDS, Hypercleaning, f1_score

from .helpers import F64, central_differences, rel_err

EXACT = [core.Full(), core.Forward(), core.Checkpointed(), core.Checkpointed(segment=3)]


@pytest.fixture(scope="module")
def small() -> Hypercleaning:
    return Hypercleaning.from_dataset("digits", n_train=20, n_val=20, seed=1, dtype=F64)


def _random_hparams(problem, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(problem.x_train.shape[0], generator=gen, dtype=F64)


DYN = core.GradientDescent(steps=12, lr=1.0)


@pytest.fixture(scope="module")
def finite_differences(small) -> torch.Tensor:
    return central_differences(small, _random_hparams(small), DYN)


@pytest.mark.parametrize("estimator", EXACT, ids=repr)
def test_exact_estimators_match_central_differences(small, finite_differences, estimator):
    res = core.hypergradient(small, _random_hparams(small), DYN, estimator)
    assert rel_err(res.grad, finite_differences) < 1e-6


def test_truncated_with_K_equal_T_equals_full_since_w0_does_not_depend_on_lambda(small):
    lam = _random_hparams(small, 1)
    dyn = core.GradientDescent(steps=12, lr=1.0)
    full = core.hypergradient(small, lam, dyn, core.Full())
    trunc = core.hypergradient(small, lam, dyn, core.Truncated(K=12))
    assert rel_err(trunc.grad, full.grad) < 1e-12
    assert rel_err(core.hypergradient(small, lam, dyn, core.Truncated(K=2)).grad, full.grad) > 1e-3


def test_closed_form_inner_grad_and_its_lambda_jacobian_equal_autograd(small):
    gen = torch.Generator().manual_seed(2)
    W = (0.3 * torch.randn(10, 65, generator=gen, dtype=F64)).requires_grad_(True)
    lam = _random_hparams(small, 3).requires_grad_(True)
    (auto,) = torch.autograd.grad(small.inner_loss(W, lam), W, create_graph=True)
    closed = small.inner_grad(W, lam)
    assert rel_err(closed.detach(), auto.detach()) < 1e-12
    # the mixed derivative B = d/dλ ∇_W g, which every estimator relies on
    v = torch.randn(10, 65, generator=gen, dtype=F64)
    (b_auto,) = torch.autograd.grad((auto * v).sum(), lam)
    (b_closed,) = torch.autograd.grad((closed * v).sum(), lam)
    assert rel_err(b_closed, b_auto) < 1e-12


def test_mean_normalisation_makes_step_size_one_descend_where_the_sum_blows_up():
    p = Hypercleaning.from_dataset("digits", n_train=300, n_val=100, dtype=F64)
    lam = torch.full((300,), 5.0, dtype=F64)  # σ ≈ 1: the largest curvature λ allows
    w, losses = p.init(lam), []
    for _ in range(100):  # the inner dynamics with γ = 1 (Section 4.2.1)
        losses.append(float(p.inner_loss(w, lam)))
        w = w - p.inner_grad(w, lam)
    assert all(b < a for a, b in zip(losses, losses[1:]))
    # the paper's sum over examples is n times steeper: the same step size blows up
    w0 = p.init(lam)
    assert float(p.inner_loss(w0 - 300 * p.inner_grad(w0, lam), lam)) > 10 * losses[0]


def test_from_dataset_builds_balanced_sets_and_records_the_corruption():
    p = Hypercleaning.from_dataset("digits", n_train=100, n_val=50, seed=0, dtype=F64)
    assert p.x_train.shape == (100, 65) and torch.all(p.x_train[:, -1] == 1)
    assert torch.bincount(p.y_val, minlength=10).tolist() == [5] * 10
    assert len(p.y_test) == 1797 - 150
    assert 35 <= int(p.corrupted.sum()) <= 50
    assert p.initial_hparams().shape == (100,) and not p.initial_hparams().any()
    again = Hypercleaning.from_dataset("digits", n_train=100, n_val=50, seed=0, dtype=F64)
    assert torch.equal(again.y_train, p.y_train) and torch.equal(again.corrupted, p.corrupted)


def test_metrics_report_accuracies_loss_and_f1_at_every_threshold(small):
    perfect = torch.where(small.corrupted, -5.0, 5.0).to(F64)
    res = core.hypergradient(small, perfect, core.GradientDescent(30, lr=1.0), core.Truncated(1))
    m = small.metrics(res.params, perfect)
    assert set(m) == {"test_acc", "val_acc", "val_loss"} | {f"f1@{t:g}" for t in THRESHOLDS}
    assert all(m[f"f1@{t:g}"] == 1.0 for t in THRESHOLDS)
    assert 0.0 <= m["test_acc"] <= 1.0 and m["val_loss"] == pytest.approx(res.outer_loss)
    flagged_all = small.metrics(res.params, torch.full_like(perfect, -10.0))["f1@-3"]
    n, c = len(perfect), int(small.corrupted.sum())
    assert flagged_all == pytest.approx(2 * c / (n + c))


def test_f1_score_counts_true_positives():
    pred = torch.tensor([True, True, False, False])
    true = torch.tensor([True, False, True, False])
    assert f1_score(pred, true) == pytest.approx(0.5)
    assert f1_score(torch.zeros(3, dtype=torch.bool), torch.zeros(3, dtype=torch.bool)) == 0.0


def test_a_short_fit_lowers_validation_loss_and_flags_corrupted_labels():
    p = Hypercleaning.from_dataset("digits", n_train=200, n_val=200, seed=0, dtype=F64)
    dyn = core.GradientDescent(30, lr=1.0)
    out = core.fit(p, p.initial_hparams(), dyn, core.Truncated(K=5), iterations=20, lr=0.1)
    assert out.history["outer_loss"][-1] < 0.8 * out.history["outer_loss"][0]
    lam = out.hparams
    res = core.hypergradient(p, lam, dyn, core.Truncated(K=1))
    assert p.metrics(res.params, lam)["f1@0"] > 0.75  # chance level is about 0.6
    assert float(lam[p.corrupted].mean()) < 0 < float(lam[~p.corrupted].mean())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="cifar"), "dataset must be one of"),
        (dict(name="mnist"), "mnist needs data_dir"),
        (dict(name="digits", n_train=1000, n_val=1000), "fewer than the 2000"),
    ],
)
def test_from_dataset_rejects_bad_requests(kwargs, match):
    with pytest.raises(core.ConfigurationError, match=match):
        Hypercleaning.from_dataset(**kwargs)


def test_constructor_rejects_mismatched_shapes():
    x, y = torch.zeros(4, 3), torch.zeros(4, dtype=torch.long)
    with pytest.raises(core.ConfigurationError, match="x_val has 2 features"):
        Hypercleaning(x, y, torch.zeros(4, 2), y, x, y)
