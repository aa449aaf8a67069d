"""The hyper-iteration loop: optimise ``λ`` with hypergradients (Theorem 3.3, Appendix G)."""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from core.diagnostics import compare
from core.dynamics import GradientDescent
from core.errors import ConfigurationError, DivergenceError
from core.estimators.base import Estimator, HypergradientResult
from core.estimators.full import Full
from core.problem import BilevelProblem
from core.tree import Spec, Tree, flatten, tree_norm, unflatten
from core.validate import finite_positive, integer_at_least
from core.warm_start import hyper_iteration

__all__ = ["FitResult", "FitState", "fit"]

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "inv_sqrt")
# Columns of the history; the exact-gradient ones are NaN on iterations that skip them.
COLUMNS = ("iteration", "outer_loss", "grad_norm", "lr", "time_s")
EXACT_COLUMNS = ("exact_norm", "cosine", "rel_error", "descent_ratio")


@dataclass
class FitState:
    """Everything needed to continue a run exactly where it stopped.

    Attributes:
        hparams: ``λ`` after ``iteration`` updates (detached copies).
        optimizer: the ``torch.optim`` state dict (Adam moments, step counts).
        iteration: hyper-iterations completed.
        eta0: the initial outer step size actually used (after ``first_step_norm`` scaling).
        history: columnar records so far, see :func:`fit`.
        extra: what else a run carries from one iteration to the next: the warm start's
            ``w_T`` (``"inner_params"``), or a single-loop method's iterates and memory
            (:mod:`core.single_loop`). Tensors in it are never updated in place.
    """

    hparams: Tree
    optimizer: dict[str, Any]
    iteration: int
    eta0: float
    history: dict[str, list[float]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def state_dict(self) -> dict[str, Any]:
        """A plain dict of tensors and numbers for ``torch.save``."""
        return {
            "hparams": self.hparams,
            "optimizer": self.optimizer,
            "iteration": self.iteration,
            "eta0": self.eta0,
            "history": self.history,
            "extra": self.extra,
        }

    @classmethod
    def from_state_dict(cls, d: dict[str, Any]) -> FitState:
        """Inverse of :meth:`state_dict` (a state saved before ``extra`` existed has none)."""
        keys = ("hparams", "optimizer", "iteration", "eta0", "history")
        return cls(**{k: d[k] for k in keys}, extra=dict(d.get("extra", {})))


@dataclass(frozen=True)
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        hparams: the final ``λ``.
        history: columns ``iteration``, ``outer_loss`` (``f`` at the iterate before the
            update), ``grad_norm`` (of the estimate), ``lr``, ``time_s`` (estimate plus
            update), and with ``exact_every`` also ``exact_norm`` ``||d_λ f||``, ``cosine``,
            ``rel_error`` and ``descent_ratio`` (``h^T d / ||d||²``, Lemma 3.2).
        state: a :class:`FitState` to resume from.
        stopped: whether the callback asked to stop early.
    """

    hparams: Tree
    history: dict[str, list[float]]
    state: FitState
    stopped: bool = False


def fit(
    problem: BilevelProblem[Any, Any],
    hparams: Tree,
    dynamics: GradientDescent,
    estimator: Estimator,
    *,
    iterations: int,
    optimizer: str = "adam",
    lr: float = 0.01,
    schedule: str = "constant",
    first_step_norm: float | None = None,
    exact_every: int = 0,
    exact_estimator: Estimator | None = None,
    callback: Callable[[dict[str, float], FitState], Any] | None = None,
    state: FitState | None = None,
    keep_history: bool = True,
    warm_start: bool = False,
    outer_batches: bool = False,
    inner_schedule: str = "constant",
    seed: int = 0,
) -> FitResult:
    """Run hyper-iterations ``λ_{τ+1} = λ_τ - η_τ · update(h_τ)`` with an estimator's ``h``.

    Theorem 3.3 uses SGD with ``η_τ = η_0 / sqrt(τ)``; Appendix G uses Adam. Footnote 4 scales
    ``η_0`` per ``K`` so that the first update has a given norm (0.6 on the toy problem):
    pass ``first_step_norm``. Both optimisers' first update is linear in ``η_0``, so the
    scaling is exact.

    Args:
        problem: the bilevel problem, as for :func:`core.hypergradient`.
        hparams: the starting ``λ_1`` (a tensor or dict of tensors); never modified. Ignored
            when ``state`` is given, except for its structure.
        dynamics: the inner optimizer unrolled for each hypergradient (Eq. 4).
        estimator: the hypergradient method whose ``h_τ`` drives the updates.
        iterations: total hyper-iterations, counting those a resumed ``state`` already did.
        optimizer: ``"adam"`` or ``"sgd"``.
        lr: ``η_0``; ignored when ``first_step_norm`` is set.
        schedule: ``"constant"`` or ``"inv_sqrt"`` (``η_τ = η_0 / sqrt(τ)``).
        first_step_norm: if set, choose ``η_0`` so that ``||λ_2 - λ_1||`` equals it.
        exact_every: every that many iterations (and at the first) also compute the exact
            ``d_λ f`` and record how the estimate compares (:func:`core.compare`); 0 for never.
        exact_estimator: the exact method for those checks; ``Full()`` by default.
        callback: called after each iteration with the record and the state; a truthy return
            value stops the run (``FitResult.stopped``).
        state: a :class:`FitState` from an earlier run to continue exactly.
        keep_history: accumulate the records in ``history`` (and so in every state). A
            caller that stores each record itself (the service's trace table) passes
            ``False`` so that states stay small; the computation is the same.
        warm_start: start each hyper-iteration's unroll from the previous one's ``w_T``
            (kept in ``state.extra["inner_params"]``, so a resumed run is exact), and walk
            the inner minibatches on across hyper-iterations. See
            :class:`core.warm_start.HyperIteration` for what it does to K-RMD's bias (a
            shorter effective horizon).
        outer_batches: estimate with ``f`` of one outer batch per hyper-iteration
            (:meth:`core.BilevelProblem.on_batch`, drawn from ``seed`` and ``τ``).
        inner_schedule: the inner step size across hyper-iterations, ``"constant"`` or
            ``"inv_sqrt"`` (``γ_τ = γ / sqrt(τ)``); with :class:`core.Compiled` a changing
            step size recompiles, so keep it constant there.
        seed: seeds the outer batch draws.

    Returns:
        A :class:`FitResult`.

    Raises:
        ConfigurationError: an argument out of range.
        DivergenceError: a non-finite loss or hypergradient; ``.iteration`` says when.
    """
    _check(iterations, optimizer, lr, schedule, first_step_norm, exact_every)
    if inner_schedule not in SCHEDULES:
        raise ConfigurationError(
            f"inner_schedule must be one of {SCHEDULES}, got {inner_schedule!r}"
        )
    exact_estimator = exact_estimator or Full()
    loop = _start(hparams, state, optimizer, lr, exact_every)
    stochastic = warm_start or outer_batches or inner_schedule != "constant"
    view = hyper_iteration(problem, fresh_batches=warm_start) if stochastic else None
    stopped = False
    current = loop.snapshot()
    for tau in range(loop.iteration + 1, iterations + 1):
        lam = unflatten(loop.spec, tuple(loop.params))
        t0 = time.perf_counter()
        seen, dyn = problem, dynamics
        if view is not None:
            warm = loop.extra.get("inner_params") if warm_start else None
            view.point(tau, dynamics.steps, warm, outer_batches, seed)
            seen = view
            if inner_schedule == "inv_sqrt":
                dyn = dataclasses.replace(dynamics, lr=dynamics.lr / math.sqrt(tau))
        res = _estimate(seen, lam, dyn, estimator, tau)
        if warm_start:  # a new detached tensor each time: states handed out stay valid
            loop.extra = {**loop.extra, "inner_params": res.params}
        elapsed = time.perf_counter() - t0
        diagnostics = (
            _compare_exact(seen, lam, dyn, exact_estimator, res, tau, exact_every)
            if exact_every
            else {}
        )
        t0 = time.perf_counter()
        lr_used = _update(loop, res.grad, tau, schedule, first_step_norm)
        elapsed += time.perf_counter() - t0

        record = _record(res, tau, lr_used, elapsed, diagnostics)
        if keep_history:
            for k, v in record.items():
                loop.history.setdefault(k, []).append(v)
        loop.iteration = tau
        current = loop.snapshot()
        if callback is not None and callback(record, current):
            stopped = True
            break
    return FitResult(hparams=current.hparams, history=loop.history, state=current, stopped=stopped)


@dataclass
class _Loop:
    """The mutable state of a run between hyper-iterations (what a :class:`FitState` copies).

    Attributes:
        params: ``λ_τ`` as the optimizer's leaf tensors, updated in place.
        spec: the structure of ``hparams``, to rebuild the user's tensor or dict.
        opt: the outer optimizer over ``params``.
        history: the columnar records so far.
        iteration: hyper-iterations completed (``τ`` after the update of iteration ``τ``).
        eta0: the initial outer step size ``η_0``.
    """

    params: list[Tensor]
    spec: Spec
    opt: torch.optim.Optimizer
    history: dict[str, list[float]]
    iteration: int
    eta0: float
    extra: dict[str, Any] = field(default_factory=dict)

    def snapshot(self) -> FitState:
        """A :class:`FitState` to resume from: tensors copied, ``history`` shared.

        The history only grows, so sharing it keeps states cheap; a resumed run deep-copies it.
        """
        return FitState(
            hparams=unflatten(self.spec, tuple(p.detach().clone() for p in self.params)),
            optimizer=copy.deepcopy(self.opt.state_dict()),
            iteration=self.iteration,
            eta0=self.eta0,
            history=self.history,
            extra=dict(self.extra),
        )


def _start(
    hparams: Tree, state: FitState | None, optimizer: str, lr: float, exact_every: int
) -> _Loop:
    """Before the first hyper-iteration: ``λ_1`` as fresh leaves, the optimizer, the history.

    From ``hparams`` with empty columns, or from a resumed ``state`` (its ``λ``, optimizer
    moments, iteration count, ``η_0`` and a copy of its history).
    """
    leaves, spec = flatten(hparams, "hparams")
    source = flatten(state.hparams, "state.hparams")[0] if state else leaves
    params = [x.detach().clone() for x in source]
    opt: torch.optim.Optimizer = (
        torch.optim.Adam(params, lr=lr) if optimizer == "adam" else torch.optim.SGD(params, lr=lr)
    )
    if state is not None:
        opt.load_state_dict(state.optimizer)
        past = copy.deepcopy(state.history)
        return _Loop(params, spec, opt, past, state.iteration, state.eta0, dict(state.extra))
    history: dict[str, list[float]] = {
        k: [] for k in (*COLUMNS, *(EXACT_COLUMNS if exact_every else ()))
    }
    return _Loop(params, spec, opt, history, 0, lr)


def _estimate(
    problem: BilevelProblem[Any, Any],
    lam: Tree,
    dynamics: GradientDescent,
    estimator: Estimator,
    tau: int,
) -> HypergradientResult:
    """Step 1 of hyper-iteration ``τ``: the estimate ``h_τ`` at ``λ_τ``.

    Raises:
        DivergenceError: the estimator's, re-raised with ``iteration=τ`` and in the message.
    """
    try:
        return estimator(problem, lam, dynamics)
    except DivergenceError as exc:
        raise DivergenceError(
            f"hyper-iteration {tau}: {exc}", where=exc.where, iteration=tau
        ) from exc


def _compare_exact(
    problem: BilevelProblem[Any, Any],
    lam: Tree,
    dynamics: GradientDescent,
    exact_estimator: Estimator,
    res: HypergradientResult,
    tau: int,
    exact_every: int,
) -> dict[str, float]:
    """Step 2 (with ``exact_every``): how ``h_τ`` compares with the exact ``d_λ f`` at ``λ_τ``.

    Runs at the first iteration and every ``exact_every``-th; NaN columns on the others. It
    must run before step 3, which moves ``λ`` in place.
    """
    if tau == 1 or tau % exact_every == 0:
        exact = exact_estimator(problem, lam, dynamics)
        cmp = compare(res.grad, exact.grad)
    else:
        cmp = dict.fromkeys(EXACT_COLUMNS, float("nan"))
    return {k: cmp[k] for k in EXACT_COLUMNS}


def _update(
    loop: _Loop, grad: Tree, tau: int, schedule: str, first_step_norm: float | None
) -> float:
    """Step 3: ``λ_{τ+1} = λ_τ - η_τ · update(h_τ)`` in place; returns the ``η_τ`` used.

    With ``first_step_norm``, the first update runs at ``η = 1`` and is then rescaled to the
    wanted norm, which fixes ``η_0`` (``loop.eta0``) for the rest of the run: both optimisers'
    first update is linear in the step size (footnote 4).

    Raises:
        ConfigurationError: ``first_step_norm`` with a zero first update.
    """
    params, opt = loop.params, loop.opt
    factor = 1.0 / math.sqrt(tau) if schedule == "inv_sqrt" else 1.0
    for p, g in zip(params, flatten(grad)[0]):
        p.grad = g.detach().clone()
    if tau == 1 and first_step_norm is not None:
        before = [p.detach().clone() for p in params]
        _set_lr(opt, factor)
        opt.step()
        step = tree_norm(tuple(p.detach() - b for p, b in zip(params, before)))
        if step == 0.0:
            raise ConfigurationError("first_step_norm needs a non-zero first hypergradient")
        loop.eta0 = first_step_norm / step
        with torch.no_grad():
            for p, b in zip(params, before):
                p.copy_(b + loop.eta0 * (p - b))
    else:
        _set_lr(opt, loop.eta0 * factor)
        opt.step()
    opt.zero_grad(set_to_none=True)
    return loop.eta0 * factor


def _record(
    res: HypergradientResult,
    tau: int,
    lr: float,
    elapsed: float,
    diagnostics: dict[str, float],
) -> dict[str, float]:
    """Step 4: the history row of iteration ``τ`` (:data:`COLUMNS`, then the exact ones)."""
    record: dict[str, float] = {
        "iteration": tau,
        "outer_loss": res.outer_loss,
        "grad_norm": res.info["grad_norm"],
        "lr": lr,
        "time_s": elapsed,
    }
    if "peak_bytes" in res.info:  # a core.Metered estimator's memory of this estimate
        record["peak_bytes"] = float(res.info["peak_bytes"])
    record.update(diagnostics)
    return record


def _set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


def _check(
    iterations: Any,
    optimizer: Any,
    lr: Any,
    schedule: Any,
    first_step_norm: Any,
    exact_every: Any,
) -> None:
    """Raise :class:`ConfigurationError` on the first of :func:`fit`'s arguments out of range."""
    integer_at_least(iterations, "iterations")
    if optimizer not in OPTIMIZERS:
        raise ConfigurationError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    if schedule not in SCHEDULES:
        raise ConfigurationError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    finite_positive(lr, "lr")
    if first_step_norm is not None and not (
        isinstance(first_step_norm, (int, float)) and first_step_norm > 0
    ):
        raise ConfigurationError(f"first_step_norm must be > 0 or None, got {first_step_norm!r}")
    integer_at_least(exact_every, "exact_every", minimum=0)
