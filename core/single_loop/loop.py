"""The loop of the single-loop methods: one step of ``(w, λ)`` per iteration, resumable."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

import torch

from core.errors import ConfigurationError, DivergenceError
from core.outer import COLUMNS, FitResult, FitState
from core.problem import BilevelProblem
from core.tree import Leaves, Spec, Tree, flatten, unflatten
from core.validate import integer_at_least

__all__ = ["SingleLoopMethod", "fit_single_loop"]


class SingleLoopMethod(Protocol):
    """A method that moves the inner iterate and ``λ`` together (SOBA, SABA, F2SA).

    Attributes:
        name: the registry name a job spec uses.
        outer_lr: the outer step size ``γ_0`` (recorded as the state's ``eta0``).
    """

    name: ClassVar[str]

    @property
    def outer_lr(self) -> float:
        """``γ_0``."""
        ...

    def start(
        self, problem: BilevelProblem[Any, Any], w: Leaves, lam: Leaves, specs: tuple[Spec, Spec]
    ) -> dict[str, Any]:
        """The method's state before step 1; it holds ``"w"``, the inner iterate."""
        ...

    def step(
        self,
        problem: BilevelProblem[Any, Any],
        lam: Leaves,
        state: dict[str, Any],
        k: int,
        specs: tuple[Spec, Spec],
    ) -> tuple[Leaves, dict[str, Any], dict[str, float]]:
        """Step ``k``: the new ``λ``, a new state (inputs untouched) and the record's numbers.

        The numbers are ``outer_loss``, ``grad_norm`` and ``lr``.
        """
        ...


def fit_single_loop(
    problem: BilevelProblem[Any, Any],
    hparams: Tree,
    method: SingleLoopMethod,
    *,
    iterations: int,
    callback: Callable[[dict[str, float], FitState], Any] | None = None,
    state: FitState | None = None,
    keep_history: bool = True,
) -> FitResult:
    """Run ``iterations`` steps of a single-loop method, as :func:`core.fit` runs an estimator.

    One iteration is one step of the method (one inner and one outer batch), not a
    hyper-iteration over a horizon ``T``. The records have :func:`core.fit`'s columns
    (``outer_loss`` is ``f`` of the step's outer batch at the iterate before the step,
    ``grad_norm`` that of the step's ``λ`` direction), and the state is a
    :class:`core.FitState` whose ``extra`` holds the method's iterates (and SABA's memory)
    and whose ``optimizer`` is empty, so a run resumed from any state is bit-identical to
    the uninterrupted one (every batch is a pure function of the seed and the step).

    Args:
        problem: the bilevel problem; :meth:`core.BilevelProblem.on_batch` gives its batches.
        hparams: the starting ``λ``; never modified; ignored when ``state`` is given.
        method: :class:`core.single_loop.SOBA`, :class:`~core.single_loop.SABA` or
            :class:`~core.single_loop.F2SA`.
        iterations: total steps, counting those a resumed ``state`` already did.
        callback: called after each step with the record and the state; a truthy return
            value stops the run.
        state: a state from an earlier run of the same method to continue.
        keep_history: accumulate the records in ``history``.

    Returns:
        A :class:`core.FitResult`; ``hparams`` the final ``λ``.

    Raises:
        ConfigurationError: ``iterations < 1``, or a ``state`` of another method.
        DivergenceError: a non-finite iterate; ``.iteration`` says at which step.
    """
    integer_at_least(iterations, "iterations")
    leaves, h_spec = flatten(hparams, "hparams")
    with torch.no_grad():
        w0, w_spec = flatten(problem.init(unflatten(h_spec, leaves)), "init(hparams)")
    specs = (w_spec, h_spec)
    if state is not None:
        if state.extra.get("method") != method.name:
            raise ConfigurationError(
                f"state is of method {state.extra.get('method')!r}, not {method.name!r}"
            )
        lam = tuple(x.detach() for x in flatten(state.hparams, "state.hparams")[0])
        inner = dict(state.extra["state"])
        start, history = state.iteration, {k: list(v) for k, v in state.history.items()}
    else:
        lam = tuple(x.detach().clone() for x in leaves)
        inner = method.start(problem, tuple(x.detach() for x in w0), lam, specs)
        start, history = 0, {k: [] for k in COLUMNS}
    current = _snapshot(lam, h_spec, inner, start, method, history)
    stopped = False
    for k in range(start + 1, iterations + 1):
        t0 = time.perf_counter()
        try:
            lam, inner, info = method.step(problem, lam, inner, k, specs)
        except DivergenceError as exc:
            raise DivergenceError(str(exc), where=exc.where, iteration=k) from exc
        record = {"iteration": float(k), **info, "time_s": time.perf_counter() - t0}
        if keep_history:
            for key, value in record.items():
                history.setdefault(key, []).append(value)
        current = _snapshot(lam, h_spec, inner, k, method, history)
        if callback is not None and callback(record, current):
            stopped = True
            break
    return FitResult(hparams=current.hparams, history=history, state=current, stopped=stopped)


def inner_params(state: FitState, problem: BilevelProblem[Any, Any]) -> Tree:
    """The inner iterate ``w`` a single-loop state holds, in the problem's structure."""
    hp = state.hparams
    with torch.no_grad():
        _, w_spec = flatten(problem.init(hp), "init(hparams)")
    return unflatten(w_spec, state.extra["state"]["w"])


def _snapshot(
    lam: Leaves,
    h_spec: Spec,
    inner: dict[str, Any],
    k: int,
    method: SingleLoopMethod,
    history: dict[str, list[float]],
) -> FitState:
    # the methods build new tensors at every step: referencing them is a snapshot
    return FitState(
        hparams=unflatten(h_spec, lam),
        optimizer={},
        iteration=k,
        eta0=method.outer_lr,
        history=history,
        extra={"method": method.name, "state": dict(inner)},
    )
