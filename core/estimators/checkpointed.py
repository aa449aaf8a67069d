"""Exact reverse mode with checkpointing every ``segment`` steps (Table 1, [24])."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from core.dynamics import GradientDescent
from core.estimators._unroll import UnrollPlan, unrolled_reverse
from core.estimators.base import HypergradientResult
from core.problem import BilevelProblem
from core.tree import Tree
from core.validate import integer_at_least

__all__ = ["Checkpointed"]


@dataclass(frozen=True)
class Checkpointed:
    """Exact ``d_λ f`` (Eq. 5) storing only every ``segment``-th inner state.

    The forward pass keeps ``s_0, s_S, s_2S, ...`` and no graph; the backward pass replays one
    segment at a time with its graph and pulls the adjoint ``α`` of Eq. (6) through it. Memory
    is ``O(M (T/S + S))``, ``O(M sqrt(T))`` for the default ``S = ceil(sqrt(T))``; the time
    is one extra forward pass over full RMD (Table 1, footnote †).

    Args:
        segment: steps between checkpoints, ``>= 1``; ``None`` for ``ceil(sqrt(T))``.

    Raises:
        ConfigurationError: ``segment < 1``.
    """

    segment: int | None = None

    name: ClassVar[str] = "checkpointed"
    exact: ClassVar[bool] = True

    def __post_init__(self) -> None:
        integer_at_least(self.segment, "segment", optional=True)

    def __call__(
        self, problem: BilevelProblem[Any, Any], hparams: Tree, dynamics: GradientDescent
    ) -> HypergradientResult:
        """``d_λ f`` (Eq. 5) by reverse mode over stored checkpoints, one segment at a time."""
        return unrolled_reverse(problem, hparams, dynamics, self.plan(dynamics.steps))

    def plan(self, T: int) -> UnrollPlan:
        """Cuts every ``segment`` steps from 0, and the ``B_0`` term."""
        S = self.segment or math.ceil(math.sqrt(T))
        info = {"method": self.name, "segment": S}
        return UnrollPlan(checkpoints=tuple(range(0, T, S)), include_init=True, info=info)
