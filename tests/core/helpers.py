"""Oracles and small problems shared by the core tests."""

from __future__ import annotations

import torch

import core
from core.tree import flatten, to_vector, unflatten

F64 = torch.float64


def rel_err(a, b) -> float:
    """``||a - b|| / ||b||`` over tensors or dicts of tensors."""
    va = to_vector(flatten(a)[0]).double()
    vb = to_vector(flatten(b)[0]).double()
    return float((va - vb).norm() / vb.norm())


def central_differences(problem, hparams, dynamics, eps: float = 1e-6):
    """``d_λ f`` by central finite differences of ``f(w_T(λ), λ)`` along every coordinate."""
    leaves, spec = flatten(hparams)
    flat = to_vector(leaves).detach().clone()

    def value(vec):
        parts, i = [], 0
        for x in leaves:
            parts.append(vec[i : i + x.numel()].view_as(x))
            i += x.numel()
        lam = unflatten(spec, tuple(parts))
        return core.hypergradient(problem, lam, dynamics, core.Truncated(K=1)).outer_loss

    grad = torch.empty_like(flat)
    for j in range(flat.numel()):
        e = torch.zeros_like(flat)
        e[j] = eps
        grad[j] = (value(flat + e) - value(flat - e)) / (2 * eps)
    return grad


class LearnedLrToy(core.BilevelProblem):
    """The toy problem with dict hparams: ``lam``, a learned ``log_lr`` and a learned init.

    ``w_0 = (2, 2) + shift`` makes ``B_0 ≠ 0``; ``log_lr`` is read by the dynamics.
    """

    def __init__(self):
        self.toy = core.problems.Toy()

    def init(self, hparams):
        return {"w": self.toy.init(hparams["lam"]) + hparams["shift"]}

    def inner_loss(self, params, hparams):
        return self.toy.inner_loss(params["w"], hparams["lam"])

    def outer_loss(self, params, hparams):
        return self.toy.outer_loss(params["w"], hparams["lam"]) + 0.1 * hparams["log_lr"].sum()

    def hparams(self):
        return {
            "lam": torch.tensor([1.0, -0.5], dtype=F64),
            "shift": torch.tensor([0.3, -0.2], dtype=F64),
            "log_lr": torch.tensor(0.1, dtype=F64),
        }


class Logistic(core.BilevelProblem):
    """L2-regularised logistic regression: a non-quadratic, strongly convex inner problem.

    ``λ`` is the log of per-feature ridge weights; ``f`` is the validation logistic loss.
    """

    def __init__(self, n: int = 40, d: int = 5, seed: int = 0):
        gen = torch.Generator().manual_seed(seed)
        w_true = torch.randn(d, generator=gen, dtype=F64)
        self.X = torch.randn(n, d, generator=gen, dtype=F64)
        self.y = (self.X @ w_true + 0.5 * torch.randn(n, generator=gen, dtype=F64) > 0).to(F64)
        self.Xv = torch.randn(n, d, generator=gen, dtype=F64)
        self.yv = (self.Xv @ w_true > 0).to(F64)
        self.d = d

    @staticmethod
    def _loss(X, y, w):
        z = X @ w
        return torch.mean(torch.nn.functional.softplus(z) - y * z)

    def init(self, hparams):
        return torch.zeros(self.d, dtype=hparams.dtype)

    def inner_loss(self, params, hparams):
        return self._loss(self.X, self.y, params) + 0.5 * torch.sum(torch.exp(hparams) * params**2)

    def outer_loss(self, params, hparams):
        return self._loss(self.Xv, self.yv, params)
