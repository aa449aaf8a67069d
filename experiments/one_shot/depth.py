"""Figure 7 (right): the bias of K-RMD against depth K, and the Jacobians that explain it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

import core
from core.problems.one_shot import OneShot
from core.problems.one_shot_tasks import task_generator as gen


@dataclass(frozen=True)
class PenaltyDepth:
    """The sweep at one setting of the penalty (regularised, or ``ρ = 0``).

    Attributes:
        rel_error: ``||h_{T-K} - d_λ f|| / ||d_λ f||`` for each K of the sweep.
        rel_error_h0: the same against ``h_0`` (full RMD without ``B_0 α_0``).
        b0_share: ``||h_0 - d_λ f|| / ||d_λ f||``, the part of ``d_λ f`` Eq. (8) omits.
        jacobian_norms: ``||A_t||_2`` for each ``t`` of the sweep.
    """

    rel_error: list[float] = field(default_factory=list)
    rel_error_h0: list[float] = field(default_factory=list)
    b0_share: float = math.nan
    jacobian_norms: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class DepthSweep:
    """Both settings of the penalty at one λ and meta-batch (``results.json``'s ``depth``).

    Attributes:
        K: the depths measured.
        t: the inner steps whose ``||A_t||`` was measured.
        regularized: with the penalty of ``g``.
        unregularized: at the same λ with ``ρ = 0``.
        at: the method whose final λ was used; ``"(not run yet)"`` before the sweep.
    """

    K: list[int] = field(default_factory=list)
    t: list[int] = field(default_factory=list)
    regularized: PenaltyDepth = field(default_factory=PenaltyDepth)
    unregularized: PenaltyDepth = field(default_factory=PenaltyDepth)
    at: str = "(not run yet)"

    def labelled(self) -> tuple[tuple[str, PenaltyDepth], ...]:
        """``(label, sweep)`` for each setting, with the labels of the report and figures."""
        return (("regularized", self.regularized), ("rho=0", self.unregularized))

    def to_json(self) -> dict[str, Any]:
        """The flat dict ``results.json`` holds, keyed by label (``"rho=0 ||A_t||"``, ...)."""
        out: dict[str, Any] = {"K": self.K}
        for label, d in self.labelled():
            out[label] = d.rel_error
            out[label + " vs h_0"] = d.rel_error_h0
            out[label + " B_0 share"] = d.b0_share
            out[label + " ||A_t||"] = d.jacobian_norms
        out["t"] = self.t
        out["at"] = self.at
        return out


def depth_sweep(
    problem: OneShot, hp: dict[str, torch.Tensor], dyn: core.GradientDescent, seed: int, at: str
) -> DepthSweep:
    """Figure 7 (right): ``||h_{T-K} - d_λ f|| / ||d_λ f||`` against K, with and without ρ.

    Also against ``h_0`` (Eq. 8 with ``K = T``), which differs from ``d_λ f`` by the
    ``B_0 α_0`` term of ``w_0 = c`` alone; and ``||A_t||`` along the unroll
    (:func:`core.jacobian_norms`), which decides whether the terms K-RMD drops are damped.

    ``ρ = 0`` drops the penalty from ``g`` at the same λ (the paper trained a separate
    unregularised model; we reuse λ to isolate the effect of the penalty on the bias).
    ``at`` names the method that reached ``hp``.
    """
    T = dyn.steps
    batch = problem.sample(gen(seed + 5))
    # up to T - 3 .. T: where the first steps, the ones ||A_t|| says dominate, come back in
    depths = sorted(
        {k for k in (1, 2, 3, 5, 10, 15, 20, 25, 30, 40, T - 3, T - 2, T - 1, T) if 1 <= k <= T}
    )
    steps = sorted({t for t in (1, 2, 3, 5, 10, 20, 30, 40, T) if t <= T})
    sweeps = []
    for regularize in (True, False):
        p = OneShot(
            problem.images,
            queries=problem.queries,
            meta_batch=problem.meta_batch,
            width=problem.width,
            regularize=regularize,
            device=problem.device,
        )
        p.set_batch(batch)
        exact = core.hypergradient(p, hp, dyn, core.Full()).grad
        # h_0 (Eq. 8 with K = T) is full RMD without B_0 α_0: the sum Prop. 3.1 bounds
        h0 = core.hypergradient(p, hp, dyn, core.Truncated(T)).grad
        grads = [core.hypergradient(p, hp, dyn, core.Truncated(K)).grad for K in depths]
        # Prop. 3.1 assumes ||A_t|| <= 1 - γα < 1: is the unroll contracting at all?
        norms = core.jacobian_norms(p, hp, dyn, steps, seed=seed)
        sweeps.append(
            PenaltyDepth(
                rel_error=[core.compare(g, exact)["rel_error"] for g in grads],
                rel_error_h0=[core.compare(g, h0)["rel_error"] for g in grads],
                b0_share=core.compare(h0, exact)["rel_error"],
                jacobian_norms=[norms[t] for t in steps],
            )
        )
    return DepthSweep(K=depths, t=steps, regularized=sweeps[0], unregularized=sweeps[1], at=at)
