"""Forward-mode differentiation (FMD) along the inner trajectory, Eq. (7)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from core.dynamics import GradientDescent, _scalar
from core.errors import ConfigurationError
from core.estimators.base import HypergradientResult, finish, prepare
from core.problem import BilevelProblem
from core.tree import Leaves, Tree, from_vector, tree_numel, unflatten

__all__ = ["Forward"]


@dataclass(frozen=True)
class Forward:
    """Exact ``d_λ f`` by propagating ``Z_t = d w_t / d λ`` forward with the iterates (Eq. 7).

    ``Z_0 = B_0``, ``Z_{t+1} = Z_t A_{t+1} + B_{t+1}``, ``d_λ f = Z_T ∇_{ŵ*} f + ∇_λ f``.
    Each column of ``Z`` is one Jacobian-vector product per step (``torch.func.jvp``), and
    ``chunk`` columns run together under ``torch.func.vmap``. No state is stored, but the
    ``M x chunk`` tangents are, and time grows with ``N`` (Table 1): use it when ``λ`` is small.
    ``problem.inner_loss`` must be a pure function that ``torch.func`` can transform.

    Args:
        chunk: hyperparameter directions propagated in one pass; ``None`` for all ``N``.

    Raises:
        ConfigurationError: ``chunk < 1``.
    """

    chunk: int | None = None

    name: ClassVar[str] = "forward"
    exact: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.chunk is not None and (
            isinstance(self.chunk, bool) or not isinstance(self.chunk, int) or self.chunk < 1
        ):
            raise ConfigurationError(f"chunk must be an integer >= 1 or None, got {self.chunk!r}")

    def __call__(
        self, problem: BilevelProblem, hparams: Tree, dynamics: GradientDescent
    ) -> HypergradientResult:
        setup = prepare(problem, hparams, dynamics)
        lam = setup.hp_const
        spec = setup.w_spec

        def directional(direction: Tensor) -> tuple[Tensor, Tensor, Leaves]:
            """``e^T d_λ f`` for one direction ``e`` of hyperparameter space, plus primals."""
            dlam = from_vector(direction, lam)

            def init(*h: Tensor) -> Leaves:
                return dynamics.init_state(problem, setup.tree(h))[0]

            def step(s: Leaves, h: Leaves) -> Leaves:
                return dynamics.functional_step(problem, s, setup.tree(h), spec)

            def outer(w: Leaves, h: Leaves) -> Tensor:
                return _scalar(problem.outer_loss(unflatten(spec, w), setup.tree(h)), "outer")

            s, ds = torch.func.jvp(init, lam, dlam)
            for _ in range(dynamics.steps):
                s, ds = torch.func.jvp(step, (s, lam), (ds, dlam))
            w = dynamics.params(s)
            loss, dloss = torch.func.jvp(outer, (w, lam), (dynamics.params(ds), dlam))
            return dloss, loss, w

        n = tree_numel(lam)
        chunk = self.chunk or n
        eye = torch.eye(n, dtype=lam[0].dtype, device=lam[0].device)
        parts = []
        with torch.no_grad():
            for i in range(0, n, chunk):
                dloss, loss, w = torch.func.vmap(directional)(eye[i : i + chunk])
                parts.append(dloss)
        grad = from_vector(torch.cat(parts), lam)
        w_T = tuple(x[0] for x in w)
        info = {"method": self.name, "T": dynamics.steps, "chunk": chunk, "stored_bytes": 0}
        return finish(setup, grad, float(loss[0]), w_T, info)
