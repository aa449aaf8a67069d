"""SABA: SOBA with SAGA-style variance reduction (Dagréou et al., NeurIPS 2022)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from core.problem import BilevelProblem
from core.single_loop._oracle import (
    add,
    axpy,
    check_finite,
    draw,
    first_order,
    second_order,
)
from core.tree import Leaves, Spec, tree_norm
from core.validate import finite_positive, integer_at_least

__all__ = ["SABA"]

# the directions SABA keeps a memory of, per level: inner batches i, outer batches j
_INNER = ("g_w", "hv", "jv")
_OUTER = ("f_w", "f_lam")


@dataclass(frozen=True)
class SABA:
    """Stochastic Average Bilevel Algorithm: SOBA's directions with a per-batch memory.

    SOBA's directions (see :class:`core.single_loop.SOBA`) are sums of terms of one inner
    batch ``i`` and one outer batch ``j``. SABA keeps, for every batch, the last value of each
    term it computed there (``m^i`` for ``∇_w g_i``, ``∇²_ww g_i v``, ``∇²_λw g_i v``; ``m^j``
    for ``∇_w f_j``, ``∇_λ f_j``) and their running means ``m̄``, and replaces every fresh term
    ``φ_i`` by the SAGA estimate::

        φ̂ = φ_i(w_k, v_k, λ_k) - m^i + m̄,      then  m̄ ← m̄ + (φ_i - m^i) / n,  m^i ← φ_i

    so ``D_w = ĝ_w``, ``D_v = ĥv + f̂_w``, ``D_λ = ĵv + f̂_λ`` and the updates are SOBA's,
    with *constant* steps: the variance of ``φ̂`` vanishes as the iterates converge, so SABA
    converges to the exact solution with constant steps (linearly on strongly convex
    problems, as Dagréou et al. show under a Polyak-Łojasiewicz condition) where SOBA needs
    decreasing ones. The memory is ``n_inner`` copies of ``(w, w, λ)`` and ``n_outer`` of
    ``(w, λ)``: a batch, not a sample, is a slot, so ``problem.on_batch`` sets its size. It is
    initialised with one full pass at the starting point (``v_0 = 0`` makes the two products
    zero there).

    The memory is held as tuples of per-batch tensors and every update makes new tuples:
    a state handed out (to a checkpoint) stays valid while the run goes on.

    Args:
        inner_lr: ``ρ``, the step of ``w`` and ``v``.
        outer_lr: ``γ``, the step of ``λ``.
        seed: seeds the batch draws.

    Raises:
        ConfigurationError: a non-positive step or a negative seed.
    """

    inner_lr: float = 0.1
    outer_lr: float = 0.01
    seed: int = 0

    name: ClassVar[str] = "saba"

    def __post_init__(self) -> None:
        finite_positive(self.inner_lr, "inner_lr")
        finite_positive(self.outer_lr, "outer_lr")
        integer_at_least(self.seed, "seed", minimum=0)

    def start(
        self, problem: BilevelProblem[Any, Any], w: Leaves, lam: Leaves, specs: tuple[Spec, Spec]
    ) -> dict[str, Any]:
        """``(w_0, v_0 = 0)`` and the memory of one pass over every batch at ``(w_0, λ_0)``."""
        v = tuple(x.new_zeros(x.shape) for x in w)
        state: dict[str, Any] = {"w": w, "v": v}
        n_in, n_out = problem.n_batches("inner"), problem.n_batches("outer")
        inner = [second_order(problem.on_batch("inner", i), w, lam, v, specs) for i in range(n_in)]
        outer = [
            first_order(problem.on_batch("outer", j), "outer", w, lam, specs)[1:]
            for j in range(n_out)
        ]
        for pos, key in enumerate(_INNER):
            state["mem_" + key] = tuple(terms[pos] for terms in inner)
            state["avg_" + key] = _mean([terms[pos] for terms in inner])
        for pos, key in enumerate(_OUTER):
            state["mem_" + key] = tuple(terms[pos] for terms in outer)
            state["avg_" + key] = _mean([terms[pos] for terms in outer])
        return state

    def step(
        self,
        problem: BilevelProblem[Any, Any],
        lam: Leaves,
        state: dict[str, Any],
        k: int,
        specs: tuple[Spec, Spec],
    ) -> tuple[Leaves, dict[str, Any], dict[str, float]]:
        """Step ``k`` (1-based): the new ``λ``, the new state and the record's numbers."""
        w, v = state["w"], state["v"]
        i = draw(problem, "inner", self.seed, k)
        j = draw(problem, "outer", self.seed, k)
        fresh_in = second_order(problem.on_batch("inner", i), w, lam, v, specs)
        loss, *fresh_out = first_order(problem.on_batch("outer", j), "outer", w, lam, specs)
        new = dict(state)
        est: dict[str, Leaves] = {}
        for key, fresh, slot, n in (
            *((key, fresh_in[p], i, problem.n_batches("inner")) for p, key in enumerate(_INNER)),
            *((key, fresh_out[p], j, problem.n_batches("outer")) for p, key in enumerate(_OUTER)),
        ):
            est[key], new["mem_" + key], new["avg_" + key] = _saga(
                fresh, state["mem_" + key], state["avg_" + key], slot, n
            )
        d_lam = add(est["jv"], est["f_lam"])
        new["w"] = axpy(w, -self.inner_lr, est["g_w"])
        new["v"] = axpy(v, -self.inner_lr, add(est["hv"], est["f_w"]))
        lam = axpy(lam, -self.outer_lr, d_lam)
        check_finite(k, w=new["w"], v=new["v"], hparams=lam)
        return lam, new, {"outer_loss": loss, "grad_norm": tree_norm(d_lam), "lr": self.outer_lr}


def _saga(
    fresh: Leaves, memory: tuple[Leaves, ...], avg: Leaves, slot: int, n: int
) -> tuple[Leaves, tuple[Leaves, ...], Leaves]:
    """The estimate ``φ_i - m^i + m̄``, the memory with ``m^i = φ_i``, and the new mean."""
    delta = tuple(f - m for f, m in zip(fresh, memory[slot]))
    estimate = add(delta, avg)
    memory = (*memory[:slot], fresh, *memory[slot + 1 :])
    return estimate, memory, axpy(avg, 1.0 / n, delta)


def _mean(parts: list[Leaves]) -> Leaves:
    return tuple(torch.stack([leaf[p] for leaf in parts]).mean(0) for p in range(len(parts[0])))
