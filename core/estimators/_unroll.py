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

from collections.abc import Sequence

import torch

from core.dynamics import GradientDescent, _scalar
from core.estimators.base import HypergradientResult, add, finish, prepare
from core.problem import BilevelProblem
from core.tree import Leaves, Tree, detached, tree_nbytes, tree_norm, unflatten


def unrolled_reverse(
    problem: BilevelProblem,
    hparams: Tree,
    dynamics: GradientDescent,
    *,
    checkpoints: Sequence[int],
    include_init: bool,
    info: dict,
) -> HypergradientResult:
    """Back-propagate through steps ``c_0 .. T`` of the inner optimizer (see module doc).

    Args:
        problem: the bilevel problem.
        hparams: ``λ``.
        dynamics: the inner optimizer; ``T = dynamics.steps``.
        checkpoints: increasing step indices in ``[0, T-1]``; back-propagation starts at
            the first one and every one of them starts a replayed segment.
        include_init: add ``B_0 α_0`` (only meaningful when ``checkpoints[0] == 0``).
        info: method-specific diagnostics to return (``method`` and the like).
    """
    setup = prepare(problem, hparams, dynamics)
    T = dynamics.steps
    spec = setup.w_spec
    lam_const = setup.tree(setup.hp_const)
    lam = setup.tree(setup.hp)
    cuts = list(checkpoints)
    to_store = set(cuts[:-1])

    with torch.no_grad():
        state, _ = dynamics.init_state(problem, lam_const)
    stored: dict[int, Leaves] = {}
    for t in range(cuts[-1]):
        if t in to_store:
            stored[t] = state
        state = dynamics.step(problem, state, lam_const, spec, create_graph=False)
    state_bytes = tree_nbytes(state)

    # Last segment and f together: one backward pass yields ∇_{ŵ*} f, α_{c_m} and h.
    start = detached(state, requires_grad=True)
    with torch.enable_grad():
        state = start
        for _ in range(cuts[-1], T):
            state = dynamics.step(problem, state, lam, spec, create_graph=True)
        w_T = dynamics.params(state)
        w_T = tuple(x if x.requires_grad else x.detach().requires_grad_(True) for x in w_T)
        loss = _scalar(problem.outer_loss(unflatten(spec, w_T), lam), "outer")
        grads = torch.autograd.grad(loss, w_T + start + setup.hp, allow_unused=True)
    n_w, n_s = len(w_T), len(start)
    grad_w = _zeros_for_none(grads[:n_w], w_T)
    alpha = _zeros_for_none(grads[n_w : n_w + n_s], start)
    h = _zeros_for_none(grads[n_w + n_s :], setup.hp)
    del state, grads

    for c, c_next in reversed(list(zip(cuts[:-1], cuts[1:]))):
        start = detached(stored.pop(c), requires_grad=True)
        with torch.enable_grad():
            state = start
            for _ in range(c, c_next):
                state = dynamics.step(problem, state, lam, spec, create_graph=True)
            alpha, dh = _vjp(state, alpha, start, setup.hp)
        h = add(h, dh)

    if include_init:
        with torch.enable_grad():
            s0, _ = dynamics.init_state(problem, lam)
            _, dh = _vjp(s0, alpha, (), setup.hp)
        h = add(h, dh)

    info.update(
        T=T,
        grad_w_norm=tree_norm(grad_w),
        stored_bytes=state_bytes * len(cuts),
        graph_steps=max(b - a for a, b in zip(cuts, [*cuts[1:], T])),
    )
    return finish(setup, h, float(loss.detach()), tuple(x.detach() for x in w_T), info)


def _vjp(outputs: Leaves, cotangents: Leaves, start: Leaves, hp: Leaves) -> tuple[Leaves, tuple]:
    """Pull ``cotangents`` back from ``outputs`` to ``(start, hp)``; zeros where unconnected."""
    pairs = [(o, c) for o, c in zip(outputs, cotangents) if o.requires_grad]
    if not pairs:
        return tuple(torch.zeros_like(x) for x in start), (None,) * len(hp)
    grads = torch.autograd.grad(
        [o for o, _ in pairs], start + hp, [c for _, c in pairs], allow_unused=True
    )
    return _zeros_for_none(grads[: len(start)], start), grads[len(start) :]


def _zeros_for_none(grads: Sequence, like: Leaves) -> Leaves:
    return tuple(torch.zeros_like(x) if g is None else g for g, x in zip(grads, like))
