"""A validated job spec turned into the estimator library's objects."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

import core
from core.tree import flatten
from jobs.problem_kinds import PLUGINS
from jobs.spec import (
    DATASET_KINDS,
    PAPER_TASK_SETS,
    FeatureRegularizationSpec,
    HypercleaningSpec,
    JobSpec,
    MLPSpec,
    OneShotSpec,
    TaskInteractionSpec,
    is_dataset_id,
)
from worker.data_dir import require_data
from worker.datasets import DatasetSource, Resolver
from worker.graphing import graph_refusal
from worker.one_shot import OneShotJob

__all__ = ["Built", "build", "hparams_npz", "to_jsonable"]


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
        if step is not None:
            step((state.iteration if state else 0) + 1)

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

    # the estimator inside the meter when the spec asks for compiled inner steps
    compiled: core.Compiled | None = None

    def note_compile(self) -> None:
        """Record in ``notes`` the seconds spent compiling so far (``compile_s``), if any."""
        if self.compiled is not None:
            self.notes["compile_s"] = round(self.compiled.compile_s, 3)


class _LearnedStep(core.BilevelProblem):
    """A problem whose tensor hparams are one named entry of a dict: ``{key: λ, ...}``.

    With ``key="lam"`` the dict gains ``log_lr`` (a learned step size); with
    ``key="example_weights"`` the learned tensor is named as the problem defines it.
    """

    def __init__(self, base: core.BilevelProblem, key: str = "lam"):
        self.base, self.key = base, key

    def init(self, hparams):
        return self.base.init(hparams[self.key])

    def inner_loss(self, params, hparams):
        return self.base.inner_loss(params, hparams[self.key])

    def outer_loss(self, params, hparams):
        return self.base.outer_loss(params, hparams[self.key])

    def metrics(self, params, hparams):
        return self.base.metrics(params, hparams[self.key])

    def initial_hparams(self):
        return {self.key: self.base.initial_hparams()}


class _LearnedStepClosedForm(_LearnedStep):
    """A :class:`_LearnedStep` that keeps its base's closed-form inner gradient."""

    def __init__(self, base: core.BilevelProblem, base_grad: Callable[..., Any], key: str):
        super().__init__(base, key)
        self._base_grad = base_grad

    def inner_grad(self, params, hparams):
        # the closed form of the base problem: no double backward through autograd
        return self._base_grad(params, hparams[self.key])


def _learned_step(base: core.BilevelProblem, key: str = "lam") -> _LearnedStep:
    if base.inner_grad is None:
        return _LearnedStep(base, key)
    return _LearnedStepClosedForm(base, base.inner_grad, key)


def _hypercleaning_on(
    spec: HypercleaningSpec, arrays: dict[str, Any], device: torch.device
) -> core.BilevelProblem:
    """Hypercleaning on an uploaded classification data set, its weights ``example_weights``.

    The file's splits are used as they are (standardised); ``fraction`` of the training
    labels is corrupted first when it is above 0 (then F1 of flagging them is reported).
    """
    data = core.problems.Splits.from_arrays(arrays, device=device)
    if data.task != "classification":
        raise core.ConfigurationError("hypercleaning needs a data set with class labels")
    y = data.y["train"]
    corrupted = None
    if spec.fraction > 0:
        y, corrupted = core.data.corrupt_labels(
            y.cpu(), data.n_classes, fraction=spec.fraction, seed=spec.seed
        )
        y, corrupted = y.to(device), corrupted.to(device)
    base = core.problems.Hypercleaning(
        data.x["train"], y, data.x["val"], data.y["val"],
        data.x.get("test"), data.y.get("test"),
        corrupted=corrupted, n_classes=data.n_classes,
    )  # fmt: skip
    return _learned_step(base, "example_weights")


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise core.ConfigurationError(f"device={name!r} but this worker has no CUDA device")
    return torch.device(name)


def _dataset_problem(
    spec: JobSpec, datasets: Resolver, device: torch.device
) -> core.BilevelProblem:
    """A problem over a data set's arrays (``problem.dataset``), as ``core.problems`` has it."""
    p = spec.problem
    if not isinstance(p, (FeatureRegularizationSpec, MLPSpec, TaskInteractionSpec)):
        raise core.ConfigurationError(f"problem {p.kind!r} is not over a data set")
    arrays = datasets(p.dataset)
    data = core.problems.Splits.from_arrays(arrays, device=device, standardize=p.standardize)
    if isinstance(p, TaskInteractionSpec):
        missing = [f"task_{s}" for s in data.x if f"task_{s}" not in arrays]
        if missing:
            raise core.ConfigurationError(f"task_interaction needs the arrays {missing}")
        tasks = {s: torch.as_tensor(arrays[f"task_{s}"]) for s in data.x}
        return core.problems.MultiTask(
            data, tasks, coupling_init=p.coupling_init, rho_init=p.rho_init,
            batch_size=spec.inner.batch_size, seed=spec.seed,
        )  # fmt: skip
    if isinstance(p, MLPSpec):
        return core.problems.MLP(
            data, hidden=p.hidden, example_weights=p.example_weights, init_decay=p.init_decay,
            batch_size=spec.inner.batch_size, seed=spec.seed,
        )  # fmt: skip
    groups = None
    if p.per == "group":
        if "groups" not in arrays:
            raise core.ConfigurationError("per='group' needs the data set's 'groups' array")
        groups = [int(g) for g in arrays["groups"]]
    return core.problems.FeatureRegularization(
        data, model=p.model, groups=groups, init_penalty=p.init_penalty,
        batch_size=spec.inner.batch_size, seed=spec.seed,
    )  # fmt: skip


def _plugin_problem(
    spec: JobSpec, datasets: Resolver, device: torch.device
) -> tuple[core.BilevelProblem, dict[str, str]]:
    """A plugin kind's problem (:mod:`jobs.plugins`), and the plugin's package and version."""
    plugin = PLUGINS[spec.problem.kind]
    factory = plugin.load_factory()
    problem = factory(spec.problem, seed=spec.seed, device=device, datasets=datasets)
    if not isinstance(problem, core.BilevelProblem):
        raise core.ConfigurationError(
            f"plugin package {plugin.package!r}: factory {plugin.factory!r} returned "
            f"{type(problem).__name__}, not a core.BilevelProblem"
        )
    return problem, plugin.source()


def build(
    spec: JobSpec, data_dir: str | Path | None = None, datasets: Resolver | None = None
) -> Built:
    """Problem, initial hparams, dynamics and estimator for ``spec``.

    Args:
        spec: the validated job spec.
        data_dir: where real data sets live (the worker's ``BILEVEL_DATA_DIR``).
        datasets: resolves ``problem.dataset`` to arrays; the built-in tables only when
            omitted (``bilevel run``).

    Raises:
        core.ConfigurationError: an option the library rejects, or missing data files.
        jobs.plugins.PluginError: a plugin kind's factory cannot be imported.
    """
    torch.manual_seed(spec.seed)
    options = spec.problem.model_dump(exclude={"kind"})
    if "w0" in options and isinstance(options["w0"], list):
        options["w0"] = tuple(options["w0"])
    device = _device(spec.device)
    problem: core.BilevelProblem
    notes: dict[str, Any] = {}
    one_shot: OneShotJob | None = None
    if spec.problem.kind in PLUGINS:
        resolver = datasets or DatasetSource(None, None, None, seed=spec.seed)
        # the summary records the plugin version that ran (the job records the submitted one)
        problem, notes["plugin"] = _plugin_problem(spec, resolver, device)
    elif isinstance(spec.problem, OneShotSpec):
        one_shot = OneShotJob.build(spec, data_dir, device)
        problem = one_shot.train
    elif isinstance(spec.problem, TaskInteractionSpec) and spec.problem.dataset in PAPER_TASK_SETS:
        problem = _paper_task_interaction(spec.problem, spec.seed, data_dir, device)
    elif spec.problem.kind in DATASET_KINDS:
        resolver = datasets or DatasetSource(None, None, None, seed=spec.seed)
        problem = _dataset_problem(spec, resolver, device)
    elif isinstance(spec.problem, HypercleaningSpec) and is_dataset_id(spec.problem.dataset):
        resolver = datasets or DatasetSource(None, None, None, seed=spec.seed)
        problem = _hypercleaning_on(spec.problem, resolver(spec.problem.dataset), device)
    elif isinstance(spec.problem, HypercleaningSpec):
        dataset = options.pop("dataset")
        options["n_train"], options["n_val"] = spec.problem.sizes()
        problem = core.problems.Hypercleaning.from_dataset(
            dataset, data_dir, device=device, **options
        )
    else:
        if spec.problem.kind == "quadratic":
            options["device"] = device
        factory = cast(
            Callable[..., core.BilevelProblem], core.problems.PROBLEMS[spec.problem.kind]
        )
        problem = factory(**options)
    hparams: Any = one_shot.initial_hparams() if one_shot else problem.initial_hparams()
    hparams = (
        {k: v.to(device) for k, v in hparams.items()}
        if isinstance(hparams, dict)
        else hparams.to(device)
    )
    lr_key = None
    if one_shot is not None:
        lr_key = "log_lr"  # the paper learns the inner step size (App. G.3): in λ already
    elif spec.inner.learn_lr and isinstance(hparams, dict):
        # named hyperparameters gain one more name; the problem reads only its own
        hparams = {**hparams, "log_lr": torch.zeros(1, dtype=_dtype(hparams), device=device)}
        lr_key = "log_lr"
    elif spec.inner.learn_lr:
        problem = _learned_step(problem)
        hparams = {"lam": hparams, "log_lr": torch.zeros(1, dtype=hparams.dtype, device=device)}
        lr_key = "log_lr"
    dynamics = core.GradientDescent(
        steps=spec.inner.steps, lr=spec.inner.lr, momentum=spec.inner.momentum, lr_key=lr_key
    )
    estimator, compiled = _estimator(spec, problem, hparams, dynamics, device, notes)
    outer = spec.outer
    fit_kwargs = {
        "iterations": outer.iterations,
        "optimizer": outer.optimizer,
        "lr": outer.lr,
        "schedule": outer.schedule,
        "first_step_norm": outer.first_step_norm,
        "exact_every": spec.diagnostics.every,
    }
    built = Built(
        problem, hparams, dynamics, estimator, fit_kwargs, device, notes, compiled=compiled
    )
    if one_shot is not None:
        built.before_iteration, built.evaluate = one_shot.before_iteration, one_shot.evaluate
    return built


def _estimator(
    spec: JobSpec,
    problem: core.BilevelProblem,
    hparams: Any,
    dynamics: core.GradientDescent,
    device: torch.device,
    notes: dict[str, Any],
) -> tuple[core.Estimator, core.Compiled | None]:
    """The metered estimator of ``spec.hypergradient``, and its compiled core if any.

    Auto-K's choice and whether it runs graphed (or why not) go into ``notes``.
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
    compiled: core.Compiled | None = None
    if getattr(spec.hypergradient, "compile", False):
        estimator = compiled = core.Compiled(estimator)
    refusal = graph_refusal(spec, device)
    notes["graphed"] = refusal is None
    if refusal is None:
        estimator = core.Graphed(estimator)  # launch-bound on a GPU: one replay per estimate
    else:
        notes["graphed_reason"] = refusal
    # each hyper-iteration's peak hypergradient memory goes into the trace (peak_bytes)
    estimator = core.Metered(estimator)
    return estimator, compiled


def _paper_task_interaction(
    p: TaskInteractionSpec, seed: int, data_dir: str | Path | None, device: torch.device
) -> core.BilevelProblem:
    """Section 4.2.2's set-up: each class of a built-in data set is a task (no upload)."""
    root: str | Path | None = data_dir
    if p.dataset in ("mnist", "omniglot"):  # read from the worker's data directory
        root = require_data(data_dir, f"task_interaction on {p.dataset}", p.dataset)
    n_tasks, n_train, n_val = p.paper_sizes()
    return core.problems.TaskInteraction.from_dataset(
        p.dataset, root, n_tasks=n_tasks, n_train=n_train, n_val=n_val, seed=seed,
        device=device, coupling_init=p.coupling_init, rho_init=p.rho_init,
    )  # fmt: skip


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
