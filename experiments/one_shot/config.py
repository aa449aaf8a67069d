"""What a one-shot run is asked to do: its options, validated configuration and methods."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import core
from experiments import data_dir_setting
from experiments._report import default_data_dir

# Table 4 of the paper: method, accuracy %, hyper-iterations, sec/iter
PAPER = [
    ("1-RMD", 95.6, "5K", 0.4),
    ("10-RMD", 96.3, "5K", 0.7),
    ("25-RMD", 96.1, "5K", 1.3),
    ("Full RMD", 95.8, "5K", 2.2),
    ("1-RMD", 97.7, "15K", 0.4),
    ("10-RMD", 97.8, "15K", 0.7),
    ("Short horizon", 96.6, "15K", 0.1),
]
# --smoke: overrides of Config, a tiny run for tests
SMOKE: dict[str, Any] = dict(
    T=3, K=[1, 3], iterations=2, meta_batch=2, eval_tasks=4, curve_tasks=4, width=4, queries=2
)


@dataclass(frozen=True)
class Config:
    """The sizes of a run, after ``--smoke`` and validation (``results.json``'s ``config``).

    ``iterations`` is what was asked for; :class:`Schedule` holds what a budget leaves.
    """

    T: int
    K: list[int]
    iterations: int
    meta_batch: int
    eval_tasks: int
    curve_tasks: int
    width: int
    queries: int


@dataclass(frozen=True)
class Schedule:
    """How long each method trains, and how often it is measured along the way."""

    iterations: int
    eval_every: int  # learning-curve points
    exact_every: int  # cosine checks against full RMD


@dataclass(frozen=True)
class Method:
    """One row of Table 4: a name, the inner dynamics it unrolls and its estimator."""

    name: str
    dynamics: core.GradientDescent
    estimator: core.Estimator


def add_arguments(parser: argparse.ArgumentParser, data_dir: str | None = None) -> None:
    """Options of ``bilevel reproduce one-shot``.

    ``data_dir`` is the caller's data-directory setting, the default of ``--data-dir``;
    without it, ``$BILEVEL_DATA_DIR`` (:func:`experiments.data_dir_setting`).
    """
    configured = data_dir if data_dir is not None else data_dir_setting()
    a = parser.add_argument
    a("--out", type=Path, required=True, help="directory for report.md, results and figures")
    a(
        "--data-dir",
        type=Path,
        default=default_data_dir(configured),
        help="data directory holding omniglot/ (default: $BILEVEL_DATA_DIR or ../shared/data)",
    )
    a(
        "--K",
        type=int,
        nargs="+",
        default=[1, 10, 25, 50],
        help="truncation depths; K = T is full RMD (default: 1 10 25 50)",
    )
    a("--T", type=int, default=50, help="inner gradient steps (default: 50)")
    a("--iterations", type=int, default=5000, help="hyper-iterations per method (paper: 5000)")
    a(
        "--budget-s",
        type=float,
        default=None,
        help="wall-clock budget in seconds for everything: time each method first and cut "
        "--iterations to a common number that fits (default: no budget)",
    )
    a("--meta-batch", type=int, default=4, help="tasks per hyper-iteration (default: 4)")
    a("--eval-tasks", type=int, default=120, help="meta-test tasks for the final accuracy")
    a(
        "--curve-tasks",
        type=int,
        default=40,
        help="meta-test and meta-validation tasks at each point of the learning curves",
    )
    a(
        "--curve-points",
        type=int,
        default=10,
        help="learning-curve evaluations after the start (default: 10)",
    )
    a(
        "--cosine-points",
        type=int,
        default=20,
        help="cosine checks of each K-RMD against full RMD during training (default: 20)",
    )
    a("--short-horizon", action="store_true", help="also run full RMD with T = 1 (Table 4)")
    a("--outer-lr", type=float, default=1e-3, help="Adam step size on λ (default: 1e-3)")
    a("--inner-lr", type=float, default=0.1, help="initial inner step size γ (learned)")
    a("--rho", type=float, default=0.1, help="initial ρ_j (learned, softplus-parametrised)")
    a("--width", type=int, default=64, help="kernels per conv layer (default: 64)")
    a("--seed", type=int, default=0, help="seed of the split, initial λ and task sequence")
    a("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")
    a(
        "--cuda-graph",
        choices=("auto", "on", "off"),
        default="auto",
        help="replay each hypergradient as one CUDA graph (core.Graphed); auto: on for cuda",
    )
    a("--smoke", action="store_true", help="tiny configuration for tests (seconds)")


def config_from_args(args: argparse.Namespace) -> Config:
    """The :class:`Config` of ``args``, before any work.

    Raises:
        core.ConfigurationError: a size below 1, a ``--K`` outside ``[1, T]``, a budget <= 0.
    """
    cfg = Config(
        T=args.T,
        K=sorted(set(args.K)),
        iterations=args.iterations,
        meta_batch=args.meta_batch,
        eval_tasks=args.eval_tasks,
        curve_tasks=args.curve_tasks,
        width=args.width,
        queries=15,
    )
    if args.smoke:
        cfg = dataclasses.replace(cfg, **SMOKE)
    if cfg.T < 1:
        raise core.ConfigurationError(f"--T must be >= 1, got {cfg.T}")
    if any(k < 1 or k > cfg.T for k in cfg.K):
        raise core.ConfigurationError(f"--K values must be in [1, T={cfg.T}], got {cfg.K}")
    for key in ("iterations", "meta_batch", "eval_tasks", "curve_tasks", "width"):
        value = getattr(cfg, key)
        if value < 1:
            raise core.ConfigurationError(f"--{key.replace('_', '-')} must be >= 1, got {value}")
    if args.budget_s is not None and args.budget_s <= 0:
        raise core.ConfigurationError(f"--budget-s must be > 0, got {args.budget_s}")
    return cfg


def methods(T: int, Ks: list[int], short: bool, inner_lr: float, graphed: bool) -> list[Method]:
    """One :class:`Method` per ``K`` (``K = T`` is full RMD, with ``B_0``), then short horizon.

    With ``graphed``, each estimator is replayed as one CUDA graph (:class:`core.Graphed`).
    """

    def unrolled(est: core.Full | core.Truncated) -> core.Estimator:
        # launch-bound on a GPU: one replayed graph per hypergradient (same arithmetic)
        return core.Graphed(est) if graphed else est

    dyn = core.GradientDescent(steps=T, lr=inner_lr, lr_key="log_lr")
    out = [
        Method("Full RMD", dyn, unrolled(core.Full()))
        if K == T
        else Method(f"{K}-RMD", dyn, unrolled(core.Truncated(K)))
        for K in Ks
    ]
    if short:
        short_dyn = core.GradientDescent(steps=1, lr=inner_lr, lr_key="log_lr")
        out.append(Method("Short horizon", short_dyn, unrolled(core.Full())))
    return out


def command_line(args: argparse.Namespace) -> str:
    """The ``bilevel reproduce one-shot`` command that reruns ``args``: non-defaults only."""
    parts = ["bilevel reproduce one-shot", f"--out {args.out}"]
    defaults = argparse.ArgumentParser()
    add_arguments(defaults)
    base = vars(defaults.parse_args(["--out", "x"]))
    for key, value in vars(args).items():
        if key in ("out", "func", "command", "experiment") or key not in base:
            continue
        if value != base[key]:
            flag = "--" + key.replace("_", "-")
            if isinstance(value, bool):
                parts.append(flag)
            elif isinstance(value, list):
                parts.append(f"{flag} {' '.join(map(str, value))}")
            else:
                parts.append(f"{flag} {value}")
    return " ".join(parts)
