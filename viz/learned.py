"""What a job learned, drawn with matplotlib: the dashboard's pictures, for notebooks.

Each function takes the summary ``GET /v1/jobs/{id}/learned`` answers (a dict, or any object
with ``model_dump()``, such as a pydantic model of it) and an optional ``Axes``, and returns
the ``Axes`` it drew on::

    import httpx, viz
    learned = httpx.get(f"{url}/v1/jobs/{job_id}/learned", headers=auth).json()
    fig = viz.plot_learned(learned)            # every part the job has, one panel each
    viz.plot_penalties(learned, top=20)        # or one at a time

Only numpy and matplotlib: no torch, no service.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "plot_example_weights",
    "plot_layer_decays",
    "plot_learned",
    "plot_paths",
    "plot_penalties",
]

# the dashboard's colours (api/static/js/chart.js): blue, red (corrupted), green (clean)
_BLUE, _RED, _GREEN = "#1f77b4", "#d62728", "#2ca02c"


def _as_dict(learned: Any) -> Mapping[str, Any]:
    if hasattr(learned, "model_dump"):
        learned = learned.model_dump()
    if not isinstance(learned, Mapping):
        raise TypeError(f"learned must be a mapping or a pydantic model, got {type(learned)}")
    return learned


def _part(learned: Any, name: str) -> Any:
    part = _as_dict(learned).get(name)
    if part is None:
        raise ValueError(f"this job's summary has no {name!r}")
    return part


def _axes(ax: Any) -> Any:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.figure().add_subplot()


def _bars(ax: Any, labels: list[str], values: list[float], title: str) -> Any:
    y = np.arange(len(values))
    ax.barh(y, values, color=_BLUE)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()  # the first (largest) on top, as listed
    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) > 100:
        ax.set_xscale("log")
    ax.set_title(title)
    return ax


def plot_penalties(learned: Any, ax: Any = None, *, top: int = 30) -> Any:
    """The learned penalties ``exp(λ)``, largest first, one bar per feature (or group).

    Args:
        learned: the job's summary.
        ax: where to draw (a new figure's axes if ``None``).
        top: how many of the largest to draw.

    Raises:
        ValueError: the job learned no penalties, or ``top < 1``.
    """
    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    p = _part(learned, "penalties")
    n = min(top, len(p["values"]))
    title = f"penalties exp(λ) per {p['per']} ({n} largest of {p['count']})"
    return _bars(_axes(ax), p["labels"][:n], p["values"][:n], title)


def plot_layer_decays(learned: Any, ax: Any = None) -> Any:
    """The learned weight decay ``exp(λ_l)`` of each layer."""
    d = _part(learned, "layer_decays")
    return _bars(_axes(ax), d["labels"], d["values"], "layer decays exp(λ_l)")


def plot_example_weights(learned: Any, ax: Any = None) -> Any:
    """The example weights ``σ(λ_i)`` as a histogram, stacked clean / corrupted if known."""
    w = _part(learned, "example_weights")
    ax = _axes(ax)
    edges = np.asarray(w["edges"])
    left, width = edges[:-1], np.diff(edges)
    if w.get("clean") is not None and w.get("corrupted") is not None:
        clean = np.asarray(w["clean"])
        ax.bar(left, clean, width, align="edge", color=_GREEN, label="clean")
        ax.bar(left, w["corrupted"], width, bottom=clean, align="edge", color=_RED,
               label="corrupted")  # fmt: skip
        ax.legend()
    else:
        ax.bar(left, w["all"], width, align="edge", color=_BLUE)
    ax.set_xlim(edges[0], edges[-1])
    ax.set_xlabel("example weight σ(λ)")
    ax.set_ylabel("examples")
    ax.set_title(f"example weights ({w['count']})")
    return ax


def plot_paths(learned: Any, axes: Any = None) -> list[Any]:
    """Each small hyperparameter over the iterations (decays, step size, penalties, λ).

    Args:
        learned: the job's summary.
        axes: one ``Axes`` per path (a new figure with a row of them if ``None``).

    Returns:
        The axes drawn on, one per path (none when the job kept no path).
    """
    paths = _as_dict(learned).get("paths") or []
    if not paths:
        return []
    if axes is None:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(5 * len(paths), 3.5))
        axes = [fig.add_subplot(1, len(paths), i + 1) for i in range(len(paths))]
    if len(axes) != len(paths):
        raise ValueError(f"axes must hold one Axes per path ({len(paths)}), got {len(axes)}")
    for ax, path in zip(axes, paths):
        for label, values in path["series"].items():
            ax.plot(path["iteration"], values, label=label)
        if path["log"]:
            ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_title(f"{path['title']} over the iterations")
        if len(path["series"]) <= 10:
            ax.legend(fontsize="small")
    return list(axes)


def plot_learned(learned: Any) -> Any:
    """A figure with one panel per part the job has: bars, histogram, then the paths.

    Raises:
        ValueError: the summary has nothing to draw.
    """
    d = _as_dict(learned)
    parts = (
        ("penalties", plot_penalties),
        ("example_weights", plot_example_weights),
        ("layer_decays", plot_layer_decays),
    )
    panels = [(name, fn) for name, fn in parts if d.get(name)]
    paths = d.get("paths") or []
    n = len(panels) + len(paths)
    if n == 0:
        raise ValueError("this job's summary has nothing to draw")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(6, 3.6 * n), layout="constrained")
    axes = [fig.add_subplot(n, 1, i + 1) for i in range(n)]
    for ax, (_, fn) in zip(axes, panels):
        fn(d, ax)
    plot_paths(d, axes[len(panels) :])
    return fig
