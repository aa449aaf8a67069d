"""The built-in problem kinds' factories: options in, a ``core.BilevelProblem`` out.

Each kind (``jobs/kinds/<kind>.py``) names its factory by dotted path and
:func:`worker.build.build` calls it as a plugin's, ``factory(options, *, seed, device,
datasets, data_dir, batch_size)``. The options were admitted (:func:`jobs.specs.admission.admit`):
the data set exists and has what the kind needs, so nothing here checks it again.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import torch

import core
from jobs.kinds.feature_regularization import FeatureRegularizationSpec
from jobs.kinds.hypercleaning import HypercleaningSpec
from jobs.kinds.mlp import MLPSpec
from jobs.kinds.tables import is_dataset_id
from jobs.kinds.task_interaction import PAPER_TASK_SETS, TaskInteractionSpec
from worker.data_dir import require_data
from worker.datasets import Resolver

__all__ = [
    "core_problem",
    "feature_regularization",
    "hypercleaning",
    "learned_step",
    "mlp",
    "task_interaction",
]


def core_problem(options: Any, *, seed: int, device: torch.device, **_: Any) -> core.BilevelProblem:
    """``core.problems.PROBLEMS[kind](**options)``: toy, toy_biased, counterexample, quadratic."""
    kwargs = options.model_dump(exclude={"kind"})
    if isinstance(kwargs.get("w0"), list):
        kwargs["w0"] = tuple(kwargs["w0"])
    if options.kind == "quadratic":
        kwargs["device"] = device
    make = cast(Callable[..., core.BilevelProblem], core.problems.PROBLEMS[options.kind])
    return make(**kwargs)


def hypercleaning(
    options: HypercleaningSpec,
    *,
    seed: int,
    device: torch.device,
    datasets: Resolver,
    data_dir: str | Path | None = None,
    batch_size: int | None = None,
    val_batch_size: int | None = None,
    **_: Any,
) -> core.BilevelProblem:
    """Hypercleaning on a built-in data set, or on a team's classification data set.

    On an uploaded one the file's splits are used as they are (standardised); ``fraction``
    of the training labels is corrupted first when it is above 0 (then F1 of flagging them
    is reported). Its weights are named ``example_weights``. ``batch_size`` training rows
    (``inner.batch_size``) and ``val_batch_size`` validation rows (``outer.batch_size``) per
    step cut fixed partitions seeded by the job's seed (the split stays the options' seed).
    """
    p = options
    if not is_dataset_id(p.dataset):
        n_train, n_val = p.sizes()
        return core.problems.Hypercleaning.from_dataset(
            p.dataset, data_dir, device=device, n_train=n_train, n_val=n_val,
            fraction=p.fraction, seed=p.seed, batch_seed=seed, batch_size=batch_size,
            val_batch_size=val_batch_size,
        )  # fmt: skip
    data = core.problems.Splits.from_arrays(datasets(p.dataset), device=device)
    y, corrupted = data.y["train"], None
    if p.fraction > 0:
        y, corrupted = core.data.corrupt_labels(
            y.cpu(), data.n_classes, fraction=p.fraction, seed=p.seed
        )
        y, corrupted = y.to(device), corrupted.to(device)
    base = core.problems.Hypercleaning(
        data.x["train"], y, data.x["val"], data.y["val"],
        data.x.get("test"), data.y.get("test"),
        corrupted=corrupted, n_classes=data.n_classes, seed=seed, batch_size=batch_size,
        val_batch_size=val_batch_size,
    )  # fmt: skip
    return learned_step(base, "example_weights")


def _splits(
    options: FeatureRegularizationSpec | MLPSpec | TaskInteractionSpec,
    datasets: Resolver,
    device: torch.device,
) -> tuple[core.problems.Splits, dict[str, Any]]:
    arrays = datasets(options.dataset)
    data = core.problems.Splits.from_arrays(arrays, device=device, standardize=options.standardize)
    return data, arrays


def feature_regularization(
    options: FeatureRegularizationSpec,
    *,
    seed: int,
    device: torch.device,
    datasets: Resolver,
    batch_size: int | None = None,
    **_: Any,
) -> core.BilevelProblem:
    """One learned penalty per feature (or per group of the data set's ``groups``)."""
    data, arrays = _splits(options, datasets, device)
    groups = [int(g) for g in arrays["groups"]] if options.per == "group" else None
    return core.problems.FeatureRegularization(
        data, model=options.model, groups=groups, init_penalty=options.init_penalty,
        batch_size=batch_size, seed=seed,
    )  # fmt: skip


def mlp(
    options: MLPSpec,
    *,
    seed: int,
    device: torch.device,
    datasets: Resolver,
    batch_size: int | None = None,
    **_: Any,
) -> core.BilevelProblem:
    """A tanh MLP with learned per-layer decay (and example weights)."""
    data, _arrays = _splits(options, datasets, device)
    return core.problems.MLP(
        data, hidden=options.hidden, example_weights=options.example_weights,
        init_decay=options.init_decay, batch_size=batch_size, seed=seed,
    )  # fmt: skip


def task_interaction(
    options: TaskInteractionSpec,
    *,
    seed: int,
    device: torch.device,
    datasets: Resolver,
    data_dir: str | Path | None = None,
    batch_size: int | None = None,
    **_: Any,
) -> core.BilevelProblem:
    """Section 4.2.2: the paper's set-up (classes as tasks) or a data set's task column."""
    p = options
    if p.dataset in PAPER_TASK_SETS:
        root: str | Path | None = data_dir
        if p.dataset in ("mnist", "omniglot"):  # read from the worker's data directory
            root = require_data(data_dir, f"task_interaction on {p.dataset}", p.dataset)
        n_tasks, n_train, n_val = p.paper_sizes()
        return core.problems.TaskInteraction.from_dataset(
            p.dataset, root, n_tasks=n_tasks, n_train=n_train, n_val=n_val, seed=seed,
            device=device, coupling_init=p.coupling_init, rho_init=p.rho_init,
        )  # fmt: skip
    data, arrays = _splits(p, datasets, device)
    tasks = {s: torch.as_tensor(arrays[f"task_{s}"]) for s in data.x}
    return core.problems.MultiTask(
        data, tasks, coupling_init=p.coupling_init, rho_init=p.rho_init,
        batch_size=batch_size, seed=seed,
    )  # fmt: skip


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

    # the base's minibatches, seen through the same dict of hparams
    def at_step(self, t):
        return self._view(self.base.at_step(t))

    def n_batches(self, level):
        return self.base.n_batches(level)

    def on_batch(self, level, index):
        return self._view(self.base.on_batch(level, index))

    def _view(self, view: core.BilevelProblem) -> core.BilevelProblem:
        return self if view is self.base else learned_step(view, self.key)


class _LearnedStepClosedForm(_LearnedStep):
    """A :class:`_LearnedStep` that keeps its base's closed-form inner gradient."""

    def __init__(self, base: core.BilevelProblem, base_grad: Callable[..., Any], key: str):
        super().__init__(base, key)
        self._base_grad = base_grad

    def inner_grad(self, params, hparams):
        # the closed form of the base problem: no double backward through autograd
        return self._base_grad(params, hparams[self.key])


def learned_step(base: core.BilevelProblem, key: str = "lam") -> core.BilevelProblem:
    """``base`` with its tensor hparams under ``key`` of a dict (which may gain ``log_lr``)."""
    if base.inner_grad is None:
        return _LearnedStep(base, key)
    return _LearnedStepClosedForm(base, base.inner_grad, key)
