"""The hyper-iteration loop: optimise ``λ`` with hypergradients (Theorem 3.3, Appendix G)."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from core.diagnostics import compare
from core.dynamics import GradientDescent
from core.errors import ConfigurationError, DivergenceError
from core.estimators.base import Estimator
from core.estimators.reverse import Full
from core.problem import BilevelProblem
from core.tree import Tree, flatten, tree_norm, unflatten

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
    """

    hparams: Tree
    optimizer: dict[str, Any]
    iteration: int
    eta0: float
    history: dict[str, list[float]] = field(default_factory=dict)

    def state_dict(self) -> dict[str, Any]:
        """A plain dict of tensors and numbers for ``torch.save``."""
        return {
            "hparams": self.hparams,
            "optimizer": self.optimizer,
            "iteration": self.iteration,
            "eta0": self.eta0,
            "history": self.history,
        }

    @classmethod
    def from_state_dict(cls, d: dict[str, Any]) -> FitState:
        """Inverse of :meth:`state_dict`."""
        return cls(**{k: d[k] for k in ("hparams", "optimizer", "iteration", "eta0", "history")})


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
    problem: BilevelProblem,
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
) -> FitResult:
    """Run hyper-iterations ``λ_{τ+1} = λ_τ - η_τ · update(h_τ)`` with an estimator's ``h``.

    Theorem 3.3 uses SGD with ``η_τ = η_0 / sqrt(τ)``; Appendix G uses Adam. Footnote 4 scales
    ``η_0`` per ``K`` so that the first update has a given norm (0.6 on the toy problem):
    pass ``first_step_norm``. Both optimisers' first update is linear in ``η_0``, so the
    scaling is exact.

    Args:
        problem, hparams, dynamics, estimator: as for :func:`core.hypergradient`.
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

    Returns:
        A :class:`FitResult`.

    Raises:
        ConfigurationError: an argument out of range.
        DivergenceError: a non-finite loss or hypergradient; ``.iteration`` says when.
    """
    _check(iterations, optimizer, lr, schedule, first_step_norm, exact_every)
    exact_estimator = exact_estimator or Full()
    leaves, spec = flatten(hparams, "hparams")
    source = flatten(state.hparams, "state.hparams")[0] if state else leaves
    params = [x.detach().clone() for x in source]
    opt = torch.optim.Adam(params, lr=lr) if optimizer == "adam" else torch.optim.SGD(params, lr=lr)
    if state is not None:
        opt.load_state_dict(state.optimizer)
        history = copy.deepcopy(state.history)
        start, eta0 = state.iteration, state.eta0
    else:
        history = {k: [] for k in (*COLUMNS, *(EXACT_COLUMNS if exact_every else ()))}
        start, eta0 = 0, lr

    stopped = False
    current = _snapshot(params, spec, opt, start, eta0, history)
    for tau in range(start + 1, iterations + 1):
        lam = unflatten(spec, tuple(params))
        t0 = time.perf_counter()
        try:
            res = estimator(problem, lam, dynamics)
        except DivergenceError as exc:
            raise DivergenceError(
                f"hyper-iteration {tau}: {exc}", where=exc.where, iteration=tau
            ) from exc
        elapsed = time.perf_counter() - t0
        diagnostics = {}
        if exact_every:
            # at λ_τ, before the update moves the parameters in place
            if tau == 1 or tau % exact_every == 0:
                exact = exact_estimator(problem, lam, dynamics)
                cmp = compare(res.grad, exact.grad)
            else:
                cmp = dict.fromkeys(EXACT_COLUMNS, float("nan"))
            diagnostics = {k: cmp[k] for k in EXACT_COLUMNS}
        t0 = time.perf_counter()
        factor = 1.0 / math.sqrt(tau) if schedule == "inv_sqrt" else 1.0
        for p, g in zip(params, flatten(res.grad)[0]):
            p.grad = g.detach().clone()
        if tau == 1 and first_step_norm is not None:
            before = [p.detach().clone() for p in params]
            _set_lr(opt, factor)
            opt.step()
            step = tree_norm(tuple(p.detach() - b for p, b in zip(params, before)))
            if step == 0.0:
                raise ConfigurationError("first_step_norm needs a non-zero first hypergradient")
            eta0 = first_step_norm / step
            with torch.no_grad():
                for p, b in zip(params, before):
                    p.copy_(b + eta0 * (p - b))
        else:
            _set_lr(opt, eta0 * factor)
            opt.step()
        opt.zero_grad(set_to_none=True)
        elapsed += time.perf_counter() - t0

        record = {
            "iteration": tau,
            "outer_loss": res.outer_loss,
            "grad_norm": res.info["grad_norm"],
            "lr": eta0 * factor,
            "time_s": elapsed,
        }
        record.update(diagnostics)
        if keep_history:
            for k, v in record.items():
                history[k].append(v)
        current = _snapshot(params, spec, opt, tau, eta0, history)
        if callback is not None and callback(record, current):
            stopped = True
            break
    return FitResult(hparams=current.hparams, history=history, state=current, stopped=stopped)


def _set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


def _snapshot(params, spec, opt, iteration, eta0, history) -> FitState:
    # The state shares `history` with the loop (it only grows); tensors are copied.
    return FitState(
        hparams=unflatten(spec, tuple(p.detach().clone() for p in params)),
        optimizer=copy.deepcopy(opt.state_dict()),
        iteration=iteration,
        eta0=eta0,
        history=history,
    )


def _check(iterations, optimizer, lr, schedule, first_step_norm, exact_every) -> None:
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ConfigurationError(f"iterations must be an integer >= 1, got {iterations!r}")
    if optimizer not in OPTIMIZERS:
        raise ConfigurationError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    if schedule not in SCHEDULES:
        raise ConfigurationError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ConfigurationError(f"lr must be a finite number > 0, got {lr!r}")
    if first_step_norm is not None and not (
        isinstance(first_step_norm, (int, float)) and first_step_norm > 0
    ):
        raise ConfigurationError(f"first_step_norm must be > 0 or None, got {first_step_norm!r}")
    if isinstance(exact_every, bool) or not isinstance(exact_every, int) or exact_every < 0:
        raise ConfigurationError(f"exact_every must be an integer >= 0, got {exact_every!r}")
