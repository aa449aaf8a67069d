"""A validated job spec turned into the estimator library's objects."""

from __future__ import annotations

import inspect
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import core
from core.tree import flatten
from jobs.kinds.registry import KINDS
from jobs.specs.job import JobSpec
from worker.auto_compiled import AutoCompiled
from worker.compile_cache import CompileTimes
from worker.compile_choice import compile_refusal
from worker.datasets import DatasetSource, Resolver
from worker.factories import learned_step
from worker.graphing import graph_refusal

__all__ = ["Built", "CompileOptions", "build", "hparams_npz", "to_jsonable"]


@dataclass
class Built:
    problem: core.BilevelProblem
    hparams: Any
    dynamics: core.GradientDescent
    estimator: Any
    fit_kwargs: dict[str, Any]
    device: torch.device
    # what the job's summary records about how it was built (auto-K's choice, whether the
    # data set came from the worker's cache, whether hypergradients run graphed, compile_s)
    notes: dict[str, Any] = field(default_factory=dict)
    # sets the data of hyper-iteration τ before it runs (one_shot's meta-batches)
    before_iteration: Callable[[int], None] | None = None
    # final metrics beyond the problem's own (one_shot's meta-test accuracy)
    evaluate: Callable[[Any, core.GradientDescent], dict[str, float]] | None = None

    def fit(
        self,
        callback: Callable[[dict[str, float], core.FitState], Any] | None = None,
        state: core.FitState | None = None,
        **options: Any,
    ) -> core.FitResult:
        """:func:`core.fit` of the built objects, from ``state`` if given.

        ``callback`` runs after each hyper-iteration as for ``core.fit``; then, unless it
        asked to stop, the next iteration's data is set (:attr:`before_iteration`).
        ``options`` override ``core.fit``'s arguments (``iterations``, ``keep_history``).
        """
        step = self.before_iteration
        start = state.iteration if state else 0
        if step is not None:
            step(start + 1)
        if self.compiled is not None and "iterations" in options:
            # compile "auto" weighs the iterations this fit will run
            self.compiled.iterations = options["iterations"] - start

        def each(record: dict[str, float], current: core.FitState) -> Any:
            stop = callback(record, current) if callback is not None else None
            if not stop and step is not None:
                step(int(record["iteration"]) + 1)
            return stop

        return core.fit(
            self.problem, self.hparams, self.dynamics, self.estimator,
            callback=each, state=state, **{**self.fit_kwargs, **options},
        )  # fmt: skip

    def final(self, hparams: Any) -> tuple[core.HypergradientResult, dict[str, float]]:
        """The hypergradient at the learned ``hparams`` and the job's final metrics."""
        res = core.hypergradient(self.problem, hparams, self.dynamics, self.estimator)
        metrics = {k: float(v) for k, v in self.problem.metrics(res.params, hparams).items()}
        if self.evaluate is not None:
            metrics.update(self.evaluate(hparams, self.dynamics))
        return res, metrics

    # the estimator inside the meter that compiles its inner steps when chosen
    # (hypergradient.compile); None for a method without a compiled path
    compiled: AutoCompiled | None = None


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise core.ConfigurationError(f"device={name!r} but this worker has no CUDA device")
    return torch.device(name)


def _make_problem(spec: JobSpec, datasets: Resolver, data_dir: str | Path | None,
                  device: torch.device) -> core.BilevelProblem:  # fmt: skip
    """The kind's factory called with what it names of the job's context (its contract)."""
    kind = KINDS[spec.problem.kind]
    factory = kind.load_factory()
    context: dict[str, Any] = {
        "data_dir": data_dir,
        "batch_size": spec.inner.batch_size,
        "val_batch_size": spec.outer.batch_size,
    }
    try:
        params = dict(inspect.signature(factory).parameters)
    except (TypeError, ValueError):  # a builtin callable without a signature: the contract only
        params = {}
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    extra = {k: v for k, v in context.items() if takes_all or k in params}
    problem = factory(spec.problem, seed=spec.seed, device=device, datasets=datasets, **extra)
    if not isinstance(problem, core.BilevelProblem):
        raise core.ConfigurationError(
            f"{kind.owner()}: factory {kind.factory!r} returned {type(problem).__name__}, "
            "not a core.BilevelProblem"
        )
    return problem


@dataclass(frozen=True)
class CompileOptions:
    """The worker's side of ``hypergradient.compile="auto"`` (``WorkerSettings``).

    Attributes:
        times: compile times measured on this worker; ``None`` keeps none.
        prior_s: the compile time assumed before one is measured for a problem.
        payoff: compile when the estimated eager run is at least this many compile times.
        background_min_s: compile in the background only for an eager run this long.
    """

    times: CompileTimes | None = None
    prior_s: float = 30.0
    payoff: float = 10.0
    background_min_s: float = 0.0


def build(
    spec: JobSpec,
    data_dir: str | Path | None = None,
    datasets: Resolver | None = None,
    compile_options: CompileOptions | None = None,
) -> Built:
    """Problem, initial hparams, dynamics and estimator for ``spec``.

    Args:
        spec: the validated job spec.
        data_dir: where real data sets live (the worker's ``BILEVEL_DATA_DIR``).
        datasets: resolves ``problem.dataset`` to arrays; the built-in tables only when
            omitted (``bilevel run``).
        compile_options: how ``hypergradient.compile="auto"`` decides; defaults without a
            cache of compile times when omitted.

    Raises:
        core.ConfigurationError: an option the library rejects, or missing data files.
        jobs.plugins.PluginError: a plugin kind's factory cannot be imported.
    """
    torch.manual_seed(spec.seed)
    device = _device(spec.device)
    notes: dict[str, Any] = {}
    resolver = datasets or DatasetSource(None, None, None, seed=spec.seed)
    problem = _make_problem(spec, resolver, data_dir, device)
    source = KINDS[spec.problem.kind].source()
    if source is not None:  # the plugin version that ran (the job records the submitted one)
        notes["plugin"] = source
    hparams: Any = problem.initial_hparams()
    hparams = (
        {k: v.to(device) for k, v in hparams.items()}
        if isinstance(hparams, dict)
        else hparams.to(device)
    )
    # a problem that learns its inner step size itself names it (one_shot: App. G.3)
    lr_key: str | None = getattr(problem, "learned_lr_key", None)
    if lr_key is None and spec.inner.learn_lr and isinstance(hparams, dict):
        # named hyperparameters gain one more name; the problem reads only its own
        hparams = {**hparams, "log_lr": torch.zeros(1, dtype=_dtype(hparams), device=device)}
        lr_key = "log_lr"
    elif lr_key is None and spec.inner.learn_lr:
        problem = learned_step(problem)
        hparams = {"lam": hparams, "log_lr": torch.zeros(1, dtype=hparams.dtype, device=device)}
        lr_key = "log_lr"
    dynamics = core.GradientDescent(
        steps=spec.inner.steps, lr=spec.inner.lr, momentum=spec.inner.momentum, lr_key=lr_key
    )
    options = compile_options or CompileOptions()
    estimator, compiled = _estimator(spec, problem, hparams, dynamics, device, notes, options)
    outer = spec.outer
    fit_kwargs = {
        "iterations": outer.iterations,
        "optimizer": outer.optimizer,
        "lr": outer.lr,
        "schedule": outer.schedule,
        "first_step_norm": outer.first_step_norm,
        "exact_every": spec.diagnostics.every,
    }
    return Built(
        problem, hparams, dynamics, estimator, fit_kwargs, device, notes, compiled=compiled,
        # the contract's optional hooks: new data per hyper-iteration, final metrics
        before_iteration=getattr(problem, "before_iteration", None),
        evaluate=getattr(problem, "evaluate", None),
    )  # fmt: skip


def _estimator(
    spec: JobSpec,
    problem: core.BilevelProblem,
    hparams: Any,
    dynamics: core.GradientDescent,
    device: torch.device,
    notes: dict[str, Any],
    options: CompileOptions,
) -> tuple[core.Estimator, AutoCompiled | None]:
    """The metered estimator of ``spec.hypergradient``, and its compiling core if any.

    Auto-K's choice, whether it runs graphed (or why not) and whether it compiles (or why
    not, ``worker.compile_choice``) go into ``notes``.
    """
    if spec.hypergradient.method == "auto":
        estimator, notes["auto_k"] = _auto(problem, hparams, dynamics, spec.hypergradient)
    elif spec.hypergradient.method in core.SINGLE_LOOP:
        estimator = core.Full()  # a single-loop job's final report: full RMD over inner.steps
    else:
        estimator = core.make_estimator(
            spec.hypergradient.method,
            **spec.hypergradient.model_dump(exclude={"method", "graphed", "compile"}),
        )
    refusal = graph_refusal(spec, device)
    notes["graphed"] = refusal is None
    setting = getattr(spec.hypergradient, "compile", None)
    no_path = compile_refusal(spec, graphed=refusal is None)
    compiled: AutoCompiled | None = None
    if refusal is None:
        estimator = core.Graphed(estimator)  # launch-bound on a GPU: one replay per estimate
    else:
        notes["graphed_reason"] = refusal
    if setting in ("auto", "on") and no_path is None:
        estimator = compiled = AutoCompiled(
            estimator, setting, spec.outer.iterations, options.times,
            spec, options.prior_s, options.payoff, notes=notes,
            background_min_s=options.background_min_s,
        )  # fmt: skip
    else:
        reason = "hypergradient.compile is 'off'" if setting == "off" else no_path
        notes["compile"] = {"used": False, "seconds": 0.0, "reason": reason}
    # each hyper-iteration's peak hypergradient memory goes into the trace (peak_bytes)
    estimator = core.Metered(estimator)
    return estimator, compiled


def _auto(
    problem: core.BilevelProblem, hparams: Any, dynamics: core.GradientDescent, method: Any
) -> tuple[Any, dict[str, Any]]:
    """Auto-K: K-RMD (or full RMD) fitting ``memory_mb`` MiB, and the choice as a dict."""
    choice = core.choose_truncation(problem, hparams, dynamics, int(method.memory_mb * (1 << 20)))
    estimator = core.Full() if choice.method == "full" else core.Truncated(choice.K)
    return estimator, choice.as_dict()


def _dtype(hparams: dict[str, torch.Tensor]) -> torch.dtype:
    return next(iter(hparams.values())).dtype


def hparams_npz(hparams: Any) -> bytes:
    """The hyperparameters as an ``.npz`` file: one array per key (``hparams`` for a tensor)."""
    leaves, keys = flatten(hparams)
    names = keys or ("hparams",)
    buf = io.BytesIO()
    arrays: dict[str, Any] = {k: x.detach().cpu().numpy() for k, x in zip(names, leaves)}
    np.savez(buf, **arrays)
    return buf.getvalue()


def to_jsonable(hparams: Any, limit: int = 64) -> Any:
    """Small hyperparameters as lists (for the job summary); ``None`` when too large."""
    leaves, keys = flatten(hparams)
    if sum(x.numel() for x in leaves) > limit:
        return None
    values = [x.detach().cpu().reshape(-1).tolist() for x in leaves]
    return dict(zip(keys, values)) if keys else values[0]
