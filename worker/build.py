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
from jobs.spec import JobSpec

__all__ = ["Built", "build", "hparams_npz", "to_jsonable"]


@dataclass
class Built:
    problem: core.BilevelProblem
    hparams: Any
    dynamics: core.GradientDescent
    estimator: Any
    fit_kwargs: dict[str, Any]
    device: torch.device
    # what the job's summary records about how it was built (auto-K's choice)
    notes: dict[str, Any] = field(default_factory=dict)


class _LearnedStep(core.BilevelProblem):
    """A problem whose hparams gain ``log_lr``: ``{"lam": λ, "log_lr": log(γ / lr)}``."""

    def __init__(self, base: core.BilevelProblem):
        self.base = base

    def init(self, hparams):
        return self.base.init(hparams["lam"])

    def inner_loss(self, params, hparams):
        return self.base.inner_loss(params, hparams["lam"])

    def outer_loss(self, params, hparams):
        return self.base.outer_loss(params, hparams["lam"])

    def metrics(self, params, hparams):
        return self.base.metrics(params, hparams["lam"])


class _LearnedStepClosedForm(_LearnedStep):
    """A :class:`_LearnedStep` that keeps its base's closed-form inner gradient."""

    def __init__(self, base: core.BilevelProblem, base_grad: Callable[..., Any]):
        super().__init__(base)
        self._base_grad = base_grad

    def inner_grad(self, params, hparams):
        # the closed form of the base problem: no double backward through autograd
        return self._base_grad(params, hparams["lam"])


def _learned_step(base: core.BilevelProblem) -> _LearnedStep:
    if base.inner_grad is None:
        return _LearnedStep(base)
    return _LearnedStepClosedForm(base, base.inner_grad)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise core.ConfigurationError(f"device={name!r} but this worker has no CUDA device")
    return torch.device(name)


def build(spec: JobSpec, data_dir: str | Path | None = None) -> Built:
    """Problem, initial hparams, dynamics and estimator for ``spec``.

    Args:
        spec: the validated job spec.
        data_dir: where real data sets live (the worker's ``BILEVEL_DATA_DIR``).

    Raises:
        core.ConfigurationError: an option the library rejects, or missing data files.
    """
    torch.manual_seed(spec.seed)
    options = spec.problem.model_dump(exclude={"kind"})
    if "w0" in options and isinstance(options["w0"], list):
        options["w0"] = tuple(options["w0"])
    device = _device(spec.device)
    problem: core.BilevelProblem
    if spec.problem.kind == "hypercleaning":
        dataset = options.pop("dataset")
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
    hparams: Any = problem.initial_hparams()
    hparams = (
        {k: v.to(device) for k, v in hparams.items()}
        if isinstance(hparams, dict)
        else hparams.to(device)
    )
    lr_key = None
    if spec.inner.learn_lr:
        problem = _learned_step(problem)
        hparams = {"lam": hparams, "log_lr": torch.zeros(1, dtype=hparams.dtype, device=device)}
        lr_key = "log_lr"
    dynamics = core.GradientDescent(
        steps=spec.inner.steps, lr=spec.inner.lr, momentum=spec.inner.momentum, lr_key=lr_key
    )
    notes: dict[str, Any] = {}
    if spec.hypergradient.method == "auto":
        estimator, notes["auto_k"] = _auto(problem, hparams, dynamics, spec.hypergradient)
    else:
        estimator = core.make_estimator(
            spec.hypergradient.method, **spec.hypergradient.model_dump(exclude={"method"})
        )
    # each hyper-iteration's peak hypergradient memory goes into the trace (peak_bytes)
    estimator = core.Metered(estimator)
    outer = spec.outer
    fit_kwargs = {
        "iterations": outer.iterations,
        "optimizer": outer.optimizer,
        "lr": outer.lr,
        "schedule": outer.schedule,
        "first_step_norm": outer.first_step_norm,
        "exact_every": spec.diagnostics.every,
    }
    return Built(problem, hparams, dynamics, estimator, fit_kwargs, device, notes)


def _auto(
    problem: core.BilevelProblem, hparams: Any, dynamics: core.GradientDescent, method: Any
) -> tuple[Any, dict[str, Any]]:
    """Auto-K: K-RMD (or full RMD) fitting ``memory_mb`` MiB, and the choice as a dict."""
    choice = core.choose_truncation(problem, hparams, dynamics, int(method.memory_mb * (1 << 20)))
    estimator = core.Full() if choice.method == "full" else core.Truncated(choice.K)
    return estimator, choice.as_dict()


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
