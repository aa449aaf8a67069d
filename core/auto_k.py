"""Choosing the truncation depth K from a memory budget and the unroll's contraction.

K-RMD (Eq. 8) holds the graph of its last ``K`` inner steps, full RMD (Eq. 6) that of all
``T``: Table 1's ``O(MK)`` against ``O(MT)``. :func:`choose_truncation` measures the bytes
one recorded step holds and picks the largest ``K`` that fits a budget (full RMD when all
``T`` steps fit). It then measures how the end of the unroll contracts,
``ρ = max_t ||A_t||`` over the last ``K`` steps (:func:`core.jacobian_norms`), and where
``ρ < 1`` reads it as ``1 - γα`` to state the bias bound of Prop. 3.1 (Eq. 10) for that
``K``; ``ρ >= 1`` means the dropped terms are not damped and no bound applies.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from core.diagnostics import (
    SavedTensorMeter,
    jacobian_norms,
    jacobian_spectral_norm,
    prop31_bound,
)
from core.dynamics import GradientDescent
from core.errors import ConfigurationError
from core.estimators.truncated import Truncated
from core.problem import BilevelProblem
from core.tree import Tree, detached, flatten, unflatten
from core.validate import integer_at_least

__all__ = ["TruncationChoice", "choose_truncation", "step_bytes"]


@dataclass(frozen=True)
class TruncationChoice:
    """What :func:`choose_truncation` chose and measured.

    Attributes:
        method: ``"truncated"`` or ``"full"``.
        K: the depth (``T`` for full RMD).
        T: the inner horizon.
        budget_bytes: the budget the choice fits.
        base_bytes: bytes held whatever ``K`` (the outer gradient, the last state).
        step_bytes: bytes one recorded inner step adds.
        contraction: ``ρ = max ||A_t||`` over the last ``K`` steps (at most ``probe`` of them).
        alpha: ``(1 - ρ) / γ``, the strong convexity ``ρ`` implies; ``None`` if ``ρ >= 1``.
        M_B: ``||B_t||`` measured at the last step (``B`` of Eq. 5).
        grad_w_norm: ``||∇_{ŵ*} f||`` at the hyperparameters given.
        bound: Prop. 3.1's bound on ``||h_{T-K} - d_λ f||`` (Eq. 10); ``None`` for full RMD
            (no bias), where ``ρ >= 1``, or with momentum.
        momentum: the inner heavy-ball momentum (Prop. 3.1 is for plain gradient descent).
    """

    method: str
    K: int
    T: int
    budget_bytes: int
    base_bytes: int
    step_bytes: int
    contraction: float
    alpha: float | None
    M_B: float
    grad_w_norm: float
    bound: float | None
    momentum: float = 0.0

    @property
    def reason(self) -> str:
        """Why this ``K``, in a sentence or two: bytes per step, budget, contraction, bound."""
        mib = 1 << 20
        budget = (f"{self.budget_bytes / mib:.4g} MiB" if self.budget_bytes >= mib
                  else f"{self.budget_bytes:,} bytes")  # fmt: skip
        fit = (
            f"one recorded inner step holds {self.step_bytes:,} bytes on top of "
            f"{self.base_bytes:,} fixed, so a budget of {budget} "
        )
        if self.method == "full":
            why = fit + f"holds all T={self.T} steps: full RMD (Eq. 6), which has no bias."
        else:
            why = fit + f"holds K={self.K} of the T={self.T} steps: K-RMD (Eq. 8)."
        if self.method == "full":
            return why
        rho = f"the last steps contract by rho={self.contraction:.4g}"
        if self.momentum != 0:
            return why + (
                f" No bias bound: with momentum {self.momentum:g} the inner dynamics are not "
                "plain gradient descent, which Prop. 3.1 assumes."
            )
        if self.bound is None or self.alpha is None:
            return why + f" No bias bound: {rho} >= 1, so the dropped terms are not damped."
        return why + (
            f" {rho} < 1 (alpha={self.alpha:.4g}), so Prop. 3.1 bounds its bias by "
            f"{self.bound:.4g} (Eq. 10)."
        )

    def as_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict, with :attr:`reason` (a job's summary records it)."""
        return {**asdict(self), "reason": self.reason}


def _peak(problem: BilevelProblem[Any, Any], hparams: Tree, dynamics: GradientDescent, K: int
          ) -> tuple[int, float]:  # fmt: skip
    with SavedTensorMeter() as meter:
        res = Truncated(K)(problem, hparams, dynamics)
    return meter.peak + int(res.info.get("stored_bytes", 0)), float(res.info["grad_w_norm"])


def step_bytes(
    problem: BilevelProblem[Any, Any], hparams: Tree, dynamics: GradientDescent
) -> tuple[int, int]:
    """``(base, per step)``: K-RMD holds ``base + K · step`` bytes for backward.

    Measured (:class:`core.SavedTensorMeter`) as the difference between ``K = 2`` and
    ``K = 1``; the graph of every recorded step of gradient descent is the same size.

    Raises:
        ConfigurationError: ``T < 2`` (one step cannot be told from the base).
    """
    if dynamics.steps < 2:
        raise ConfigurationError(f"measuring a step needs T >= 2, got T={dynamics.steps}")
    one, _ = _peak(problem, hparams, dynamics, 1)
    two, _ = _peak(problem, hparams, dynamics, 2)
    step = max(two - one, 1)
    return max(one - step, 0), step


def _b_norm(
    problem: BilevelProblem[Any, Any], hparams: Tree, dynamics: GradientDescent, t: int,
    iters: int, seed: int,
) -> float:  # fmt: skip
    """``||B_t||_2 = ||∂Ξ_t / ∂λ||_2`` by power iterations on ``B_t^T B_t`` (double vjp)."""
    leaves, hp_spec = flatten(hparams)
    hp = detached(leaves, requires_grad=True)
    with torch.no_grad():
        state, spec = dynamics.init_state(problem, unflatten(hp_spec, detached(leaves)))
        for _ in range(t - 1):
            state = dynamics.step(problem, state, unflatten(hp_spec, detached(leaves)), spec,
                                  create_graph=False)  # fmt: skip
    with torch.enable_grad():
        s = detached(state)
        nxt = dynamics.step(problem, s, unflatten(hp_spec, hp), spec, create_graph=True)
        gen = torch.Generator().manual_seed(seed)
        return jacobian_spectral_norm(nxt, hp, iters, gen)


def choose_truncation(
    problem: BilevelProblem[Any, Any],
    hparams: Tree,
    dynamics: GradientDescent,
    budget_bytes: int,
    *,
    probe: int = 8,
    iters: int = 100,
    seed: int = 0,
) -> TruncationChoice:
    """The largest ``K`` whose K-RMD (Eq. 8) fits ``budget_bytes``, or full RMD if ``T`` fits.

    ``K = floor((budget - base) / step)`` with ``base`` and ``step`` from :func:`step_bytes`,
    capped at ``T``. The contraction ``ρ`` is the largest ``||A_t||`` over the last
    ``min(K, probe)`` steps (power iterations, :func:`core.jacobian_norms`); where ``ρ < 1``,
    ``α = (1 - ρ)/γ`` and the bound is Prop. 3.1's Eq. (10),
    ``(1-γα)^K / (γα) · ||∇_{ŵ*} f|| · M_B``, with ``M_B`` measured at step ``T``.

    Args:
        problem: the bilevel problem.
        hparams: ``λ`` at which to measure (the job's initial hyperparameters).
        dynamics: the inner optimizer (plain gradient descent for the bound to apply).
        budget_bytes: the most bytes the hypergradient may hold for backward.
        probe: how many of the last steps to measure ``||A_t||`` at (>= 1).
        iters: power iterations per norm (>= 1).
        seed: of the power iterations' random starts.

    Returns:
        A :class:`TruncationChoice`.

    Raises:
        ConfigurationError: not even ``K = 1`` fits the budget, ``T < 2`` or a bad argument.
    """
    integer_at_least(budget_bytes, "budget_bytes")
    integer_at_least(probe, "probe")
    T = dynamics.steps
    base, step = step_bytes(problem, hparams, dynamics)
    K = min((budget_bytes - base) // step, T)
    if K < 1:
        raise ConfigurationError(
            f"budget_bytes={budget_bytes} holds no recorded step: K=1 needs {base + step} "
            f"bytes ({base} base + {step} per step)"
        )
    method = "full" if K == T else "truncated"
    steps = range(max(T - min(K, probe), 0) + 1, T + 1)
    norms = jacobian_norms(problem, hparams, dynamics, steps, iters=iters, seed=seed)
    rho = max(norms.values())
    _, grad_w_norm = _peak(problem, hparams, dynamics, 1)
    m_b = _b_norm(problem, hparams, dynamics, T, iters, seed)
    gamma = float(dynamics.lr)
    alpha = (1.0 - rho) / gamma if rho < 1 and dynamics.momentum == 0 else None
    bound = None
    if alpha is not None and method == "truncated":
        bound = prop31_bound(K, gamma, alpha, grad_w_norm, m_b)
    return TruncationChoice(
        method=method, K=int(K), T=T, budget_bytes=int(budget_bytes), base_bytes=base,
        step_bytes=step, contraction=rho, alpha=alpha, M_B=m_b, grad_w_norm=grad_w_norm,
        bound=bound, momentum=float(dynamics.momentum),
    )  # fmt: skip
