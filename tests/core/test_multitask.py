"""Task interaction on a data set's task column: hypergradients against finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import core
from core.problems.multitask import MultiTask
from core.tree import flatten, to_vector
from tests.core.helpers import F64, central_differences, rel_err
from tests.core.test_dataset_problems import _perturbed, cancer, diabetes, digits


def _tasks(data, n_tasks=3, seed=0):
    rng = np.random.default_rng(seed)
    return {s: torch.as_tensor(rng.integers(0, n_tasks, len(y))) for s, y in data.y.items()}


def _problem(kind, batch_size=None):
    data = {"regression": diabetes, "binary": cancer, "softmax": digits}[kind]()
    return MultiTask(data, _tasks(data), batch_size=batch_size, rho_init=0.05)


@pytest.mark.parametrize("method", ["full", "truncated", "forward"])
@pytest.mark.parametrize("kind", ["regression", "binary", "softmax"])
def test_hypergradient_matches_central_differences(kind, method):
    problem = _problem(kind)
    dyn = core.GradientDescent(steps=8, lr=0.3)
    est = {"full": core.Full(), "truncated": core.Truncated(K=8), "forward": core.Forward()}
    lam = _perturbed(problem)
    res = core.hypergradient(problem, lam, dyn, est[method])
    fd = central_differences(problem, lam, dyn, eps=1e-6)
    assert rel_err(to_vector(flatten(res.grad)[0]), fd) < 1e-6


def test_minibatch_truncated_equals_full():
    problem = _problem("softmax", batch_size=7)
    dyn = core.GradientDescent(steps=9, lr=0.3)
    lam = _perturbed(problem)
    full = core.hypergradient(problem, lam, dyn, core.Full())
    trunc = core.hypergradient(problem, lam, dyn, core.Truncated(K=9))
    assert rel_err(trunc.grad, full.grad) < 1e-12


def test_the_coupling_term_is_the_sum_of_weighted_squared_differences():
    problem = _problem("softmax")
    gen = torch.Generator().manual_seed(3)
    W = torch.randn(problem.init(problem.initial_hparams()).shape, generator=gen, dtype=F64)
    lam = _perturbed(problem)
    C, rho = problem.coupling(lam)
    direct = sum(
        C[u, v] * torch.sum((W[u] - W[v]) ** 2)
        for u in range(problem.n_tasks)
        for v in range(problem.n_tasks)
    )
    zero_loss = (
        problem.inner_loss(W, lam)
        - problem.example_losses(
            problem._outputs(W, problem.xb["train"], problem.tasks["train"]),
            problem.data.y["train"],
        ).mean()
    )
    assert torch.allclose(zero_loss, direct + rho * torch.sum(W**2), rtol=1e-12)


def test_task_ids_outside_the_training_tasks_are_refused():
    data = digits()
    tasks = _tasks(data)
    tasks["val"] = tasks["val"].clone()
    tasks["val"][0] = 7
    with pytest.raises(core.ConfigurationError, match="task_val has ids in"):
        MultiTask(data, tasks)
