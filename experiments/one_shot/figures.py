"""The Figure 7 analogues and the outer-loss plot, as PNG files."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from experiments._report import savefig
from experiments.one_shot.depth import DepthSweep
from experiments.one_shot.training import MethodResult


def figures(out: Path, runs: dict[str, MethodResult], depth: DepthSweep) -> None:
    """Write the six figures of the report into ``out``."""
    curves = {name: r.training.curve for name, r in runs.items()}
    _lines(
        out / "fig7_test_accuracy.png",
        {n: (c.iteration, c.test_accuracy) for n, c in curves.items()},
        "meta-test accuracy (%)",
        lambda v: 100 * v,
    )
    _lines(
        out / "fig7_val_error.png",
        {n: (c.iteration, c.val_error) for n, c in curves.items()},
        "meta-validation error (%)",
        lambda v: 100 * v,
    )
    _lines(
        out / "fig7_cosine.png",
        {
            n: (r.training.history["iteration"], r.training.history.get("cosine", []))
            for n, r in runs.items()
        },
        "cosine of K-RMD and full RMD hypergradients",
    )
    _outer_loss(out / "outer_loss.png", runs)
    _rel_error_vs_depth(out / "fig7_rel_error_vs_depth.png", depth)
    _jacobian_norms(out / "fig7_jacobian_norms.png", depth)


def _lines(
    path: Path,
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    ylabel: str,
    transform: Callable[[float], float] = lambda v: v,
) -> None:
    """One line per method against the hyper-iteration; NaN points (no check) left out."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, (xs, ys) in series.items():
        pts = [(x, transform(y)) for x, y in zip(xs, ys) if y == y]  # drop NaN
        if pts:
            ax.plot(*zip(*pts), marker=".", label=name)
    ax.set_xlabel("hyper-iteration")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    savefig(fig, path)


def _outer_loss(path: Path, runs: dict[str, MethodResult]) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, r in runs.items():
        y = r.training.history["outer_loss"]
        w = max(1, len(y) // 50)  # moving average: the outer loss is one meta-batch's
        smooth = [
            sum(y[max(0, i - w + 1) : i + 1]) / len(y[max(0, i - w + 1) : i + 1])
            for i in range(len(y))
        ]
        ax.plot(r.training.history["iteration"], smooth, label=name)
    ax.set_xlabel("hyper-iteration")
    ax.set_ylabel("outer loss f (query CE, moving average)")
    ax.grid(alpha=0.3)
    ax.legend()
    savefig(fig, path)


def _rel_error_vs_depth(path: Path, depth: DepthSweep) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for (label, d), color in zip(depth.labelled(), ("C0", "C1")):
        ax.semilogy(depth.K, d.rel_error, marker="o", color=color, label=f"{label} vs full")
        ax.semilogy(
            depth.K,
            d.rel_error_h0,
            marker="x",
            ls="--",
            color=color,
            label=f"{label} vs h_0 (full without B_0)",
        )
    ax.set_xlabel("reverse depth K")
    ax.set_ylabel("relative l2 error of K-RMD")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    savefig(fig, path)


def _jacobian_norms(path: Path, depth: DepthSweep) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for (label, d), color in zip(depth.labelled(), ("C0", "C1")):
        if depth.t:
            ax.semilogy(depth.t, d.jacobian_norms, marker="o", color=color, label=label)
    ax.axhline(1.0, color="k", lw=0.8, ls=":", label="1: no damping")
    ax.set_xlabel("inner step t")
    ax.set_ylabel("||A_t||_2 = ||d w_t / d w_{t-1}||")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    savefig(fig, path)
