"""The problems the library benchmarks time, and the floor they are measured against.

:class:`WeightedSoftmax` is data hypercleaning in miniature (one weight ``sigmoid(λ_i)`` per
training example) with autograd's inner gradient; :class:`ClosedForm` the same with the
inner gradient written out; :func:`floor` the ``T`` plain inner steps with no graph.
"""

from __future__ import annotations

import torch
from torch import nn

import core

__all__ = ["ClosedForm", "WeightedSoftmax", "floor"]


class WeightedSoftmax(core.BilevelProblem):
    """``g = mean_i σ(λ_i) CE(W x_i, y_i) + 1e-3 ||W||²``, ``f`` = validation CE."""

    def __init__(self, n: int = 1000, d: int = 64, classes: int = 10, seed: int = 0):
        gen = torch.Generator().manual_seed(seed)
        self.X = torch.randn(n, d, generator=gen)
        self.y = torch.randint(0, classes, (n,), generator=gen)
        self.Xv = torch.randn(n, d, generator=gen)
        self.yv = torch.randint(0, classes, (n,), generator=gen)
        self.shape = (classes, d)

    def init(self, hparams):
        return torch.zeros(self.shape, dtype=hparams.dtype, device=hparams.device)

    def inner_loss(self, params, hparams):
        ce = torch.nn.functional.cross_entropy(self.X @ params.T, self.y, reduction="none")
        return torch.mean(torch.sigmoid(hparams) * ce) + 1e-3 * torch.sum(params**2)

    def outer_loss(self, params, hparams):
        return torch.nn.functional.cross_entropy(self.Xv @ params.T, self.yv)

    def initial_hparams(self):
        return torch.zeros(self.X.shape[0])


def floor(problem, hparams, dyn) -> None:
    """T inner steps with no graph: what every method must at least do."""
    with torch.no_grad():
        state, spec = dyn.init_state(problem, hparams)
        for _ in range(dyn.steps):
            state = dyn.step(problem, state, hparams, spec, create_graph=False)


class ClosedForm(WeightedSoftmax):
    """:class:`WeightedSoftmax` with ``∇_W g`` written out: no double backward needed."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.Y = nn.functional.one_hot(self.y, self.shape[0]).to(self.X.dtype)

    def inner_grad(self, params, hparams):
        # ∇_W of mean_i σ(λ_i) CE_i: Σ_i σ(λ_i)/n (softmax(W x_i) - e_{y_i}) x_i^T
        residual = torch.softmax(self.X @ params.T, dim=1) - self.Y
        weights = torch.sigmoid(hparams) / len(self.y)
        return (weights[:, None] * residual).T @ self.X + 2e-3 * params
