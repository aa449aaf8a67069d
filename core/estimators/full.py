"""Full reverse-mode differentiation (RMD) through all ``T`` steps, Eq. (6)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from core.dynamics import GradientDescent
from core.estimators._unroll import UnrollPlan, unrolled_reverse
from core.estimators.base import HypergradientResult
from core.problem import BilevelProblem
from core.tree import Tree

__all__ = ["Full"]


@dataclass(frozen=True)
class Full:
    """Exact hypergradient by back-propagation through every inner step (RMD, Eq. 6).

    ``α_T = ∇_{ŵ*} f``, ``h_T = ∇_λ f``, then ``h_{t-1} = h_t + B_t α_t`` and
    ``α_{t-1} = A_t α_t`` down to ``d_λ f = h_{-1}``, including ``B_0`` when ``w_0`` depends
    on ``λ``. Time ``O(cT)``, memory ``O(MT)`` (Table 1).

    Example:
        >>> import torch, core
        >>> res = core.hypergradient(core.problems.Toy(), torch.ones(2, dtype=torch.float64),
        ...                          core.GradientDescent(steps=100, lr=0.1), core.Full())
        >>> res.grad.shape
        torch.Size([2])
    """

    name: ClassVar[str] = "full"
    exact: ClassVar[bool] = True

    def __call__(
        self, problem: BilevelProblem[Any, Any], hparams: Tree, dynamics: GradientDescent
    ) -> HypergradientResult:
        """``d_λ f`` (Eq. 5) by back-propagating through all ``T`` steps of ``dynamics``."""
        return unrolled_reverse(problem, hparams, dynamics, self.plan(dynamics.steps))

    def plan(self, T: int) -> UnrollPlan:
        """One segment ``[0, T]``, and the ``B_0`` term."""
        return UnrollPlan(checkpoints=(0,), include_init=True, info={"method": self.name})
