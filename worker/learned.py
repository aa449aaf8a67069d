"""What a job learned, summarised for pictures: the job's ``learned`` artifact (JSON).

The ``.npz`` of ``GET /v1/jobs/{id}/hparams`` holds the raw ``λ`` (logs and logits); this
summary holds what they mean, read with the problem that the worker built:

- ``penalties``: ``exp(λ)`` of ``feature_penalties``, one per feature (with the built-in
  table's feature names) or per group (with its features), largest first;
- ``example_weights``: ``σ(λ)`` of hypercleaning's (or an MLP's) per-example logits as a
  histogram on ``[0, 1]``, split clean / corrupted where the problem knows which labels were
  corrupted, with each part's mean;
- ``layer_decays``: ``exp(λ_l)`` per layer; ``step_size``: the learned ``γ = lr · exp(λ)``;
- ``paths``: every small hyperparameter (at most :data:`PATH_MAX_VALUES` numbers) after each
  hyper-iteration, as the job went (at most :data:`PATH_POINTS` points, evenly thinned), in
  the same units: decays and step size, penalties, or the raw ``λ``.

``GET /v1/jobs/{id}/learned`` serves it; the dashboard's job page and :mod:`viz.learned`
draw it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

import core
from core.tree import flatten
from jobs.specs.job import JobSpec

__all__ = ["BINS", "PATH_MAX_VALUES", "PATH_POINTS", "HparamsPath", "summarise"]

#: bins of the example weights' histogram on [0, 1]
BINS = 20
#: the most numbers of hyperparameters whose path over the iterations is kept
PATH_MAX_VALUES = 16
#: the most points a path keeps (every other one is dropped, and the stride doubles, past it)
PATH_POINTS = 200
#: the most penalties listed (the largest); a wider model's others are counted only
MAX_BARS = 500


class HparamsPath:
    """The small hyperparameters after each hyper-iteration, thinned to at most ``points``.

    Args:
        points: the most points kept (even, >= 2).
        max_values: hyperparameters with more numbers than this in all are not followed.
    """

    def __init__(self, points: int = PATH_POINTS, max_values: int = PATH_MAX_VALUES):
        if points < 2 or points % 2:
            raise ValueError(f"points must be even and >= 2, got {points}")
        self.points, self.max_values = points, max_values
        self.stride = 1
        self.iteration: list[int] = []
        self.values: dict[str, list[list[float]]] = {}

    def add(self, iteration: int, hparams: Any) -> None:
        """Record ``hparams`` after ``iteration`` (every ``stride``-th iteration is kept)."""
        if iteration % self.stride:
            return
        leaves, keys = flatten(hparams)
        if sum(x.numel() for x in leaves) > self.max_values:
            return
        self.iteration.append(iteration)
        for key, x in zip(keys or ("hparams",), leaves):
            flat = x.detach().reshape(-1).cpu().double().tolist()
            self.values.setdefault(key, []).append(flat)
        if len(self.iteration) > self.points:  # keep the even multiples of the new stride
            self.stride *= 2
            keep = [i for i, it in enumerate(self.iteration) if it % self.stride == 0]
            self.iteration = [self.iteration[i] for i in keep]
            self.values = {k: [v[i] for i in keep] for k, v in self.values.items()}


def summarise(
    spec: JobSpec,
    problem: core.BilevelProblem,
    dynamics: core.GradientDescent,
    hparams: Any,
    path: HparamsPath | None = None,
) -> dict[str, Any]:
    """The JSON-ready summary of what ``hparams`` mean for ``problem`` (see the module doc)."""
    leaves, keys = flatten(hparams)
    named = {k: x.detach().cpu().double() for k, x in zip(keys or ("hparams",), leaves)}
    base = getattr(problem, "base", problem)  # under a learned step size's wrapper
    out: dict[str, Any] = {"kind": spec.problem.kind}
    lr_key = dynamics.lr_key if dynamics.lr_key in named else None
    # how each followed hyperparameter reads: (title, transform, a label per number)
    units: dict[str, tuple[str, Any, list[str] | None]] = {}
    if "feature_penalties" in named:
        pen = _penalties(spec, base, named["feature_penalties"].exp().numpy())
        out["penalties"] = pen
        units["feature_penalties"] = ("penalties", np.exp, pen.pop("unsorted"))
    if "layer_decay" in named:
        decays = named["layer_decay"].exp().reshape(-1).tolist()
        labels = [f"layer {i + 1}" for i in range(len(decays))]
        out["layer_decays"] = {"labels": labels, "values": decays}
        units["layer_decay"] = ("layer decays", np.exp, labels)
    if lr_key is not None:
        out["step_size"] = float(dynamics.lr * math.exp(float(named[lr_key].reshape(-1)[0])))
        units[lr_key] = ("step size", lambda v: dynamics.lr * np.exp(v), ["step size"])
    weights_key = next((k for k in ("example_weights", "hparams") if k in named
                        and _is_example_weights(spec, k)), None)  # fmt: skip
    if weights_key is not None:
        out["example_weights"] = _weights(named[weights_key].sigmoid().numpy(), base)
    if path is not None and path.iteration:
        out["paths"] = _paths(path, units)
    return out


def _is_example_weights(spec: JobSpec, key: str) -> bool:
    return key == "example_weights" or spec.problem.kind == "hypercleaning"


def _penalties(spec: JobSpec, problem: Any, values: np.ndarray) -> dict[str, Any]:
    per = getattr(spec.problem, "per", "feature")
    names = _feature_names(spec, problem)
    if per == "group":
        groups = getattr(problem, "groups", None)
        groups = groups.tolist() if groups is not None else list(range(len(values)))
        labels = []
        for g in range(len(values)):
            members = [names[j] if names and j < len(names) else f"feature {j}"
                       for j, gj in enumerate(groups) if gj == g]  # fmt: skip
            shown = ", ".join(members[:4]) + (", ..." if len(members) > 4 else "")
            labels.append(f"group {g} ({shown})")
    else:
        labels = names or [f"feature {j}" for j in range(len(values))]
    order = np.argsort(-values, kind="stable")[:MAX_BARS]
    return {
        "per": per,
        "labels": [labels[i] for i in order],
        "values": [float(values[i]) for i in order],
        "count": len(values),
        "named": names is not None,
        "unsorted": labels,  # the paths' labels (popped by summarise)
    }


def _feature_names(spec: JobSpec, problem: Any) -> list[str] | None:
    """The built-in table's feature names (scikit-learn's), if the data set is one."""
    dataset = getattr(spec.problem, "dataset", None)
    loaders = {"diabetes": "load_diabetes", "breast_cancer": "load_breast_cancer",
               "digits": "load_digits"}  # fmt: skip
    if dataset not in loaders:
        return None  # an uploaded data set: arrays only, no names
    from sklearn import datasets

    names = [str(n) for n in getattr(datasets, loaders[dataset])().feature_names]
    return names if len(names) == problem.data.n_features else None


def _weights(weights: np.ndarray, problem: Any) -> dict[str, Any]:
    edges = np.linspace(0.0, 1.0, BINS + 1)
    out: dict[str, Any] = {"edges": edges.tolist(), "count": int(weights.size),
                           "all": np.histogram(weights, edges)[0].tolist(),
                           "mean": float(weights.mean())}  # fmt: skip
    corrupted = getattr(problem, "corrupted", None)
    if corrupted is not None:
        mask = np.asarray(corrupted.cpu() if isinstance(corrupted, torch.Tensor) else corrupted)
        mask = mask.astype(bool).reshape(-1)
        if mask.shape == weights.shape:
            for name, part in (("clean", weights[~mask]), ("corrupted", weights[mask])):
                out[name] = np.histogram(part, edges)[0].tolist()
                out[f"{name}_mean"] = float(part.mean()) if part.size else None
    return out


def _paths(
    path: HparamsPath, units: dict[str, tuple[str, Any, list[str] | None]]
) -> list[dict[str, Any]]:
    out = []
    for key, rows in path.values.items():
        raw = f"λ {key}" if key != "hparams" else "λ"
        name, transform, labels = units.get(key, (raw, None, None))
        values = np.asarray(rows, dtype=np.float64)
        if transform is not None:
            values = transform(values)
        width = values.shape[1]
        if labels is None or len(labels) != width:
            labels = [name] if width == 1 else [f"{name} {j + 1}" for j in range(width)]
        series = {labels[j]: values[:, j].tolist() for j in range(width)}
        out.append({"key": key, "title": name, "log": transform is not None,
                    "iteration": list(path.iteration), "series": series})  # fmt: skip
    return out
