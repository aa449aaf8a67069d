"""Forward-mode differentiation (FMD) along the inner trajectory, Eq. (7)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from core.dynamics import GradientDescent
from core.estimators.base import HypergradientResult, finish, prepare
from core.problem import BilevelProblem
from core.tree import Leaves, Tree, from_vector, tree_numel, unflatten
from core.validate import integer_at_least, scalar_loss

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
        integer_at_least(self.chunk, "chunk", optional=True)

    def __call__(
        self, problem: BilevelProblem[Any, Any], hparams: Tree, dynamics: GradientDescent
    ) -> HypergradientResult:
        """``d_λ f`` (Eq. 7) by propagating ``Z_t`` forward, ``chunk`` directions per pass."""
        setup = prepare(problem, hparams, dynamics)
        lam = setup.hp_const
        spec = setup.w_spec

        # each step's view of the problem (its minibatch) is drawn here, outside vmap, which
        # refuses random operations such as a batch's permutation
        views = [problem.at_step(t) for t in range(dynamics.steps)]

        def directional(direction: Tensor) -> tuple[Tensor, Tensor, Leaves]:
            """``e^T d_λ f`` for one direction ``e`` of hyperparameter space, plus primals."""
            dlam = from_vector(direction, lam)

            def init(*h: Tensor) -> Leaves:
                return dynamics.init_state(problem, setup.tree(h))[0]

            def step(s: Leaves, h: Leaves, t: int) -> Leaves:
                return dynamics.functional_step(views[t], s, setup.tree(h), spec)

            def outer(w: Leaves, h: Leaves) -> Tensor:
                return scalar_loss(problem.outer_loss(unflatten(spec, w), setup.tree(h)), "outer")

            s, ds = _jvp(init, lam, dlam)
            for t in range(dynamics.steps):
                s, ds = _jvp(lambda s_, h_, t=t: step(s_, h_, t), (s, lam), (ds, dlam))
            w = dynamics.params(s)
            loss, dloss = _jvp(outer, (w, lam), (dynamics.params(ds), dlam))
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


def _jvp(func: Callable[..., Any], primals: Any, tangents: Any) -> tuple[Any, Any]:
    """``torch.func.jvp`` without ``has_aux``: ``(func(*primals), J·tangents)``.

    torch annotates ``jvp`` as returning a pair or, with ``has_aux``, a triple; this narrows
    the result to the pair it is without ``has_aux``.
    """
    out = torch.func.jvp(func, primals, tangents)
    return out[0], out[1]
