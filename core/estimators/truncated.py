"""K-step truncated reverse-mode differentiation (K-RMD), Eq. (8)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from core.dynamics import GradientDescent
from core.errors import ConfigurationError
from core.estimators._unroll import UnrollPlan, unrolled_reverse
from core.estimators.base import HypergradientResult
from core.problem import BilevelProblem
from core.tree import Tree
from core.validate import integer_at_least

__all__ = ["Truncated"]

_STORES = ("graph", "iterates")


@dataclass(frozen=True)
class Truncated:
    """The K-RMD estimate ``h_{T-K}`` of Eq. (8): back-propagate through the last K steps.

    ``h_{T-K} = ∇_λ f + Σ_{t=T-K+1}^{T} B_t A_{t+1} ··· A_T ∇_{ŵ*} f``.

    The first ``T-K`` steps run with no autograd graph at all, so neither time nor memory of
    the backward pass depends on ``T``. Its bias is at most
    ``(1-γα)^K / (γα) · ||∇_{ŵ*} f|| · M_B`` when ``g`` is α-strongly convex (Prop. 3.1,
    Eq. 10), and once ``w_t`` has converged it equals the K-term Neumann series of the
    implicit hypergradient (Prop. 3.6). With ``K = T`` it is full RMD *without* the ``B_0``
    term: Eq. (8) sums from ``t = T-K+1 = 1``.

    Args:
        K: truncation depth, ``1 <= K <= T`` (checked against ``T`` when called).
        store: ``"graph"`` keeps the autograd graph of the last K steps (fastest);
            ``"iterates"`` stores only the K states ``s_{T-K} .. s_{T-1}`` and rebuilds one
            step's graph at a time in the backward pass (memory: K states plus one step).

    Raises:
        ConfigurationError: ``K < 1``, ``K > T`` or an unknown ``store``.
    """

    K: int
    store: str = "graph"

    name: ClassVar[str] = "truncated"
    exact: ClassVar[bool] = False

    def __post_init__(self) -> None:
        integer_at_least(self.K, "K")
        if self.store not in _STORES:
            raise ConfigurationError(f"store must be one of {_STORES}, got {self.store!r}")

    def __call__(
        self, problem: BilevelProblem[Any, Any], hparams: Tree, dynamics: GradientDescent
    ) -> HypergradientResult:
        """``h_{T-K}`` (Eq. 8) at ``hparams``; raises if ``K > dynamics.steps``."""
        return unrolled_reverse(problem, hparams, dynamics, self.plan(dynamics.steps))

    def plan(self, T: int) -> UnrollPlan:
        """Cut at ``T - K`` (and at every later step when storing iterates); no ``B_0``.

        Raises:
            ConfigurationError: ``K > T``.
        """
        if self.K > T:
            raise ConfigurationError(f"K must be in [1, T={T}], got K={self.K}")
        first = T - self.K
        cuts = tuple(range(first, T)) if self.store == "iterates" else (first,)
        info = {"method": self.name, "K": self.K, "store": self.store}
        return UnrollPlan(checkpoints=cuts, include_init=False, info=info)
