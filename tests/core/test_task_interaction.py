"""Task interaction (Section 4.2.2) on small digits instances, float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import core
from core.data import load_digits
from core.problems.task_interaction import TaskInteraction, load_task_data

from .helpers import F64, central_differences, rel_err

EXACT = [core.Full(), core.Forward(), core.Checkpointed(), core.Checkpointed(segment=4)]
DYN = core.GradientDescent(steps=15, lr=0.1)


@pytest.fixture(scope="module")
def small() -> TaskInteraction:
    return TaskInteraction.from_dataset("digits", n_tasks=3, n_train=9, n_val=9, dtype=F64)


def _hparams(problem, seed=0):
    """Away from the symmetric start, so that every entry of B matters differently."""
    gen = torch.Generator().manual_seed(seed)
    lam = problem.initial_hparams()
    V = problem.n_tasks
    return {"B": lam["B"] + torch.randn(V, V, generator=gen, dtype=F64), "nu": lam["nu"] + 1.0}


@pytest.fixture(scope="module")
def finite_differences(small) -> torch.Tensor:
    return central_differences(small, _hparams(small), DYN)


@pytest.mark.parametrize("estimator", EXACT, ids=repr)
def test_exact_estimators_match_central_differences(small, finite_differences, estimator):
    lam = _hparams(small)
    res = core.hypergradient(small, lam, DYN, estimator)
    got = torch.cat([res.grad["B"].reshape(-1), res.grad["nu"].reshape(-1)])
    assert rel_err(got, finite_differences) < 1e-6
    assert float(res.grad["nu"]) != 0.0 and res.grad["B"].shape == (3, 3)


def test_closed_form_inner_grad_and_its_hparam_jacobian_equal_autograd(small):
    gen = torch.Generator().manual_seed(1)
    W = torch.randn(3, 65, generator=gen, dtype=F64).requires_grad_(True)
    lam = {k: v.requires_grad_(True) for k, v in _hparams(small, 2).items()}
    (auto,) = torch.autograd.grad(small.inner_loss(W, lam), W, create_graph=True)
    closed = small.inner_grad(W, lam)
    assert rel_err(closed.detach(), auto.detach()) < 1e-12
    v = torch.randn(3, 65, generator=gen, dtype=F64)
    b_auto = torch.autograd.grad((auto * v).sum(), list(lam.values()))
    b_closed = torch.autograd.grad((closed * v).sum(), list(lam.values()))
    for a, c in zip(b_auto, b_closed):
        assert rel_err(c, a) < 1e-12


def test_coupling_is_symmetric_nonnegative_and_matches_the_pairwise_sum(small):
    lam = _hparams(small, 3)
    C, rho = small.coupling(lam)
    assert torch.equal(C, C.T) and bool((C > 0).all()) and float(rho) > 0
    W = torch.randn(3, 65, dtype=F64)
    pairwise = sum(C[i, j] * torch.sum((W[i] - W[j]) ** 2) for i in range(3) for j in range(3))
    ce = F.cross_entropy(small.x_train @ W.T, small.y_train)
    expected = ce + pairwise + rho * torch.sum(W**2)
    assert float(small.inner_loss(W, lam)) == pytest.approx(float(expected), rel=1e-12)


@pytest.mark.parametrize("V", [3, 10])
def test_initial_hparams_set_every_coupling_to_one_over_V(V):
    p = TaskInteraction.from_dataset("digits", n_tasks=V, n_train=3 * V, n_val=3 * V, dtype=F64)
    C, rho = p.coupling(p.initial_hparams())
    assert torch.allclose(C, torch.full((V, V), 1.0 / V, dtype=F64))
    assert float(rho) == pytest.approx(0.01)
    # the Laplacian's largest eigenvalue is V · (1/V) = 1 whatever V is
    L = torch.diag(C.sum(1)) - C
    assert float(torch.linalg.eigvalsh(L)[-1]) == pytest.approx(1.0)


def test_from_data_splits_the_chosen_tasks_class_balanced():
    data = load_task_data("digits", dtype=F64)
    p = TaskInteraction.from_data(data, n_tasks=4, n_train=8, n_val=12, seed=5)
    assert p.n_tasks == 4 and set(p.y_test.unique().tolist()) == {0, 1, 2, 3}
    assert torch.bincount(p.y_train, minlength=4).tolist() == [2] * 4
    assert torch.bincount(p.y_val, minlength=4).tolist() == [3] * 4
    assert len(p.y_test) == int((load_digits().labels < 4).sum()) - 20


def test_a_short_fit_lowers_the_validation_loss():
    p = TaskInteraction.from_dataset("digits", n_train=50, n_val=50, dtype=F64)
    dyn = core.GradientDescent(100, lr=0.1)
    out = core.fit(p, p.initial_hparams(), dyn, core.Truncated(K=5), iterations=15, lr=0.05)
    loss = out.history["outer_loss"]
    assert loss[-1] < loss[0] - 0.03 and all(b < a for a, b in zip(loss, loss[1:]))
    res = core.hypergradient(p, out.hparams, dyn, core.Truncated(K=1))
    m = p.metrics(res.params, out.hparams)
    assert m["val_loss"] == pytest.approx(res.outer_loss) and 0.5 < m["test_acc"] <= 1.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="cifar100"), "dataset must be one of"),
        (dict(name="omniglot"), "omniglot needs data_dir"),
        (dict(name="digits", n_tasks=11), r"n_tasks must be in \[2, 10\]"),
        (dict(name="digits", n_tasks=2, n_train=200, n_val=200), "fewer than the 400"),
    ],
)
def test_from_dataset_rejects_bad_requests(kwargs, match):
    with pytest.raises(core.ConfigurationError, match=match):
        TaskInteraction.from_dataset(**kwargs)
