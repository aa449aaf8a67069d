"""Reverse-mode differentiation through the unrolled inner optimizer (Eq. 6), in segments.

One engine serves full RMD, K-RMD and checkpointing. The horizon ``[0, T]`` is cut at
``checkpoints = [c_0 < c_1 < ... < c_m]``:

* steps before ``c_0`` run with no autograd graph at all: they contribute nothing to the
  estimate (K-RMD drops them, Eq. 8) and hold no memory;
* the states ``s_{c_0} .. s_{c_{m-1}}`` are stored, detached, during that forward pass;
* the last segment ``[c_m, T]`` is run with its graph and back-propagated together with
  ``f(w_T, λ)``, giving ``α_{c_m}`` and the partial sum of ``h`` (Eq. 6);
* every earlier segment is replayed from its stored state with its graph, and the adjoint
  ``α`` is pulled through it with one vector-Jacobian product, adding ``B_t α_t`` to ``h``;
* optionally, ``α_0`` is pulled through ``w_0 = Ξ_0(λ)`` to add the ``B_0`` term.

At any moment the memory held is the stored states plus the graph of one segment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from core.dynamics import GradientDescent
from core.estimators.base import Estimator, HypergradientResult, Setup, add, finish, prepare
from core.problem import BilevelProblem
from core.tree import (
    Leaves,
    Spec,
    Tree,
    detached,
    tree_nbytes,
    tree_norm,
    unflatten,
    zeros_for_none,
)
from core.validate import scalar_loss


@dataclass(frozen=True)
class UnrollPlan:
    """Where an unrolled reverse pass cuts the horizon, and what it reports.

    Attributes:
        checkpoints: increasing step indices in ``[0, T-1]``; back-propagation starts at
            the first one and every one of them starts a replayed segment.
        include_init: add ``B_0 α_0`` (only meaningful when ``checkpoints[0] == 0``).
        info: method-specific diagnostics to return (``method`` and the like).
    """

    checkpoints: tuple[int, ...]
    include_init: bool
    info: dict[str, Any]


class Transition(Protocol):
    """One step ``s_{t+1} = Ξ_{t+1}(s_t, λ)`` of Eq. (4), as :meth:`GradientDescent.step`.

    The engine runs every step through one of these: the dynamics' own eager step by
    default, a compiled one under :class:`core.Compiled`.
    """

    def __call__(
        self,
        problem: BilevelProblem[Any, Any],
        state: Leaves,
        hparams: Tree,
        spec: Spec,
        *,
        create_graph: bool,
        t: int | None = None,
    ) -> Leaves:
        """``s_{t+1}``; with ``create_graph`` recorded for a backward pass through it."""
        ...


class UnrolledEstimator(Estimator, Protocol):
    """An estimator that is one :class:`UnrollPlan` of this engine (full, K-RMD, checkpointed).

    :class:`core.Graphed` records such an estimator's pass as a CUDA graph from its plan.
    """

    def plan(self, T: int) -> UnrollPlan:
        """Where to cut the horizon ``[0, T]``."""
        ...


def unrolled_reverse(
    problem: BilevelProblem[Any, Any], hparams: Tree, dynamics: GradientDescent, plan: UnrollPlan
) -> HypergradientResult:
    """Back-propagate through steps ``c_0 .. T`` of the inner optimizer (see module doc).

    Args:
        problem: the bilevel problem.
        hparams: ``λ``.
        dynamics: the inner optimizer; ``T = dynamics.steps``.
        plan: the cuts (from the estimator's ``plan(T)``).
    """
    setup = prepare(problem, hparams, dynamics)
    h, loss, w_T, grad_w = unrolled_tensors(problem, setup, dynamics, plan)
    return finish_unrolled(setup, dynamics, plan, (h, loss, w_T, grad_w))


def unrolled_tensors(
    problem: BilevelProblem[Any, Any],
    setup: Setup,
    dynamics: GradientDescent,
    plan: UnrollPlan,
    step: Transition | None = None,
) -> tuple[Leaves, Tensor, Leaves, Leaves]:
    """The reverse pass itself: ``(h, f(w_T, λ), w_T, ∇_{ŵ*} f)`` as tensors.

    Nothing here copies a value to the host, so the whole pass can be recorded as one CUDA
    graph (:class:`core.Graphed`); the checks and floats are :func:`finish_unrolled`'s.
    ``step`` replaces ``dynamics.step`` for every transition (:class:`core.Compiled`).
    """
    step = dynamics.step if step is None else step
    T = dynamics.steps
    spec = setup.w_spec
    lam_const = setup.tree(setup.hp_const)
    lam = setup.tree(setup.hp)
    cuts = list(plan.checkpoints)
    to_store = set(cuts[:-1])

    stored: dict[int, Leaves] = {}
    with torch.no_grad():  # the steps before the last segment: no graph (Eq. 8 drops them)
        state, _ = dynamics.init_state(problem, lam_const)
        for t in range(cuts[-1]):
            if t in to_store:
                stored[t] = state
            state = step(problem, state, lam_const, spec, create_graph=False, t=t)

    # Last segment and f together: one backward pass yields ∇_{ŵ*} f, α_{c_m} and h.
    start = detached(state, requires_grad=True)
    # α only goes to an earlier segment or to B_0; K-RMD's one segment needs neither, and
    # asking for it would cost a Hessian-vector product through the segment's first step
    wanted = start if len(cuts) > 1 or plan.include_init else ()
    with torch.enable_grad():
        state = start
        for t in range(cuts[-1], T):
            state = step(problem, state, lam, spec, create_graph=True, t=t)
        w_T = dynamics.params(state)
        w_T = tuple(x if x.requires_grad else x.detach().requires_grad_(True) for x in w_T)
        loss = scalar_loss(problem.outer_loss(unflatten(spec, w_T), lam), "outer")
        grads = torch.autograd.grad(loss, w_T + wanted + setup.hp, allow_unused=True)
    n_w, n_s = len(w_T), len(wanted)
    grad_w = zeros_for_none(grads[:n_w], w_T)
    alpha = zeros_for_none(grads[n_w : n_w + n_s], wanted)
    h = zeros_for_none(grads[n_w + n_s :], setup.hp)
    del state, grads

    for c, c_next in reversed(list(zip(cuts[:-1], cuts[1:]))):
        start = detached(stored.pop(c), requires_grad=True)
        with torch.enable_grad():
            state = start
            for t in range(c, c_next):
                state = step(problem, state, lam, spec, create_graph=True, t=t)
            alpha, dh = _vjp(state, alpha, start, setup.hp)
        h = add(h, dh)

    if plan.include_init:
        with torch.enable_grad():
            s0, _ = dynamics.init_state(problem, lam)
            _, dh = _vjp(s0, alpha, (), setup.hp)
        h = add(h, dh)
    return h, loss.detach(), tuple(x.detach() for x in w_T), grad_w


def finish_unrolled(
    setup: Setup,
    dynamics: GradientDescent,
    plan: UnrollPlan,
    tensors: tuple[Leaves, Tensor, Leaves, Leaves],
) -> HypergradientResult:
    """Diagnostics, finiteness checks and the user's structures for :func:`unrolled_tensors`."""
    h, loss, w_T, grad_w = tensors
    T, cuts = dynamics.steps, plan.checkpoints
    # a state is w (and the velocity, as large, with momentum)
    state_bytes = tree_nbytes(w_T) * (2 if dynamics.momentum else 1)
    info = dict(plan.info)
    info.update(
        T=T,
        grad_w_norm=tree_norm(grad_w),
        stored_bytes=state_bytes * len(cuts),
        graph_steps=max(b - a for a, b in zip(cuts, [*cuts[1:], T])),
    )
    return finish(setup, h, float(loss), w_T, info)


def _vjp(
    outputs: Leaves, cotangents: Leaves, start: Leaves, hp: Leaves
) -> tuple[Leaves, tuple[Tensor | None, ...]]:
    """Pull ``cotangents`` back from ``outputs`` to ``(start, hp)``; zeros where unconnected."""
    pairs = [(o, c) for o, c in zip(outputs, cotangents) if o.requires_grad]
    if not pairs:
        return tuple(torch.zeros_like(x) for x in start), (None,) * len(hp)
    grads = torch.autograd.grad(
        [o for o, _ in pairs], start + hp, [c for _, c in pairs], allow_unused=True
    )
    return zeros_for_none(grads[: len(start)], start), grads[len(start) :]
