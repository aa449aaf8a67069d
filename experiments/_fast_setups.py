"""The problems, settings and measuring loop of the fast-methods comparison (issue 24).

The data-cleaning problem (benchopt's ``benchmark_bilevel``): 20,000 training and 5,000
validation images drawn (seeded) from MNIST's training set, its 10,000 test images for test
accuracy; half the training labels replaced by uniformly random ones; features standardised
with the training split's statistics; inner problem the softmax regression
``mean_i σ(λ_i) CE(x_i W, y_i) + 0.2 ||W||²`` (:class:`core.problems.Hypercleaning`, which adds
a bias column), outer problem the validation cross-entropy, ``λ`` starting at -2. Figures of
merit: the seconds until test accuracy first reaches 0.856, the best test accuracy within the
budget, and the mean accuracy over the last 30% of the budget ("late": the maximum of a noisy
stochastic iterate flatters it). Time is the method's own wall time on one thread (evaluation
is excluded: the clock stops while it runs); torch's one-time lazy initialisation is paid
before any clock starts.

The quadratic pair (:class:`core.problems.QuadraticPair`, known solution): the seconds to
``||λ - λ*|| < 1e-4`` and the distance reached.

Used by ``benchmarks/library/data_cleaning.py`` and ``bilevel reproduce fast-methods``.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

import core
from core.data import corrupt_labels, load_mnist
from core.problems import Hypercleaning, QuadraticPair
from core.single_loop import inner_params

TARGET = 0.856
DIST_TARGET = 1e-4


def data_cleaning(data_dir: str, seed: int, batch: int | None = 64) -> Hypercleaning:
    """The issue's problem, with training and validation batches of ``batch`` rows."""
    train, test = load_mnist(data_dir, "train"), load_mnist(data_dir, "test")
    perm = torch.randperm(len(train.labels), generator=torch.Generator().manual_seed(seed))
    tr, va = perm[:20000], perm[20000:25000]
    x_tr, x_va, x_te = train.images[tr], train.images[va], test.images
    mean, std = x_tr.mean(0), x_tr.std(0)
    std = torch.where(std > 0, std, torch.ones_like(std))  # constant border pixels
    noisy, corrupted = corrupt_labels(train.labels[tr], 10, fraction=0.5, seed=seed)
    return Hypercleaning(
        (x_tr - mean) / std, noisy, (x_va - mean) / std, train.labels[va],
        (x_te - mean) / std, test.labels, corrupted=corrupted, reg=0.2,
        batch_size=batch, val_batch_size=batch, seed=seed,
    )  # fmt: skip


# name -> (kind, options); kind "single" runs core.fit_single_loop, "fit" runs core.fit.
# Settings tuned by hand on seed 0 with a 2-4 s budget (a few values of each step size and
# of the batch size); "batch" is the rows of one training and one validation batch.
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    # constant steps: fastest to the target, then the noisy iterate oscillates (see "late")
    "soba": ("single", {"method": core.SOBA(inner_lr=0.3, outer_lr=3000.0), "batch": 512}),
    "soba_decay": (
        "single",
        {"method": core.SOBA(inner_lr=0.5, outer_lr=1e4, schedule="inv_sqrt"), "batch": 512},
    ),
    "saba": ("single", {"method": core.SABA(inner_lr=0.3, outer_lr=3000.0), "batch": 512}),
    "f2sa": (
        "single",
        {
            "method": core.F2SA(
                inner_lr=0.5,
                outer_lr=3000.0,
                penalty_growth=0.1,
                penalty_max=10.0,
                schedule="inv_sqrt",
            ),
            "batch": 512,
        },
    ),
    "krmd_warm_minibatch": (
        "fit",
        {
            "dynamics": core.GradientDescent(steps=4, lr=0.3),
            "estimator": core.Truncated(K=2),
            "warm_start": True,
            "outer_batches": True,
            "lr": 1.0,
            "batch": 512,
        },
    ),
    "full_rmd_warm": (
        "fit",
        {
            "dynamics": core.GradientDescent(steps=10, lr=0.5),
            "estimator": core.Full(),
            "warm_start": True,
            "lr": 1.0,
            "batch": None,
        },
    ),
    # the paper's protocol: full-batch T = 50 from W_0 = 0 at every hyper-iteration, K = 5
    "krmd_paper": (
        "fit",
        {
            "dynamics": core.GradientDescent(steps=50, lr=0.5),
            "estimator": core.Truncated(K=5),
            "lr": 1.0,
            "batch": None,
            "every_s": 1.0,
        },
    ),
}


class Clock:
    """Wall time of the method alone: :meth:`pause` while evaluating."""

    def __init__(self) -> None:
        self.spent, self.t0 = 0.0, time.perf_counter()

    def now(self) -> float:
        return self.spent + time.perf_counter() - self.t0

    def pause(self) -> None:
        self.spent += time.perf_counter() - self.t0

    def resume(self) -> None:
        self.t0 = time.perf_counter()


def run_method(
    problem: Any,
    name: str,
    budget_s: float,
    evaluate: Callable[[Any, core.FitState], float],
    every_s: float,
) -> list[tuple[float, float]]:
    """``[(seconds, metric), ...]`` of one method on one problem within ``budget_s``."""
    kind, opts = (QUAD_METHODS if isinstance(problem, QuadraticPair) else METHODS)[name]
    every_s = opts.get("every_s", every_s)
    curve: list[tuple[float, float]] = []
    clock = Clock()
    last = [-1e9]

    def callback(record: dict[str, float], state: core.FitState) -> bool:
        now = clock.now()
        if now - last[0] >= every_s or now >= budget_s:
            clock.pause()
            curve.append((now, evaluate(problem, state)))
            last[0] = now
            clock.resume()
        return now >= budget_s

    lam0 = (
        problem.initial_hparams()
        if isinstance(problem, QuadraticPair)
        else -2.0 * (torch.ones(problem.x_train.shape[0]))
    )
    clock.resume()
    try:
        _fit(problem, kind, opts, lam0, callback)
    except core.DivergenceError as exc:  # reported, not fatal: a step size too large
        print(f"{name}: diverged: {exc}")
    return curve


def _fit(problem: Any, kind: str, opts: dict[str, Any], lam0: Any, callback: Any) -> None:
    iterations = 10**9
    if kind == "single":
        core.fit_single_loop(problem, lam0, opts["method"], iterations=iterations,
                             callback=callback, keep_history=False)  # fmt: skip
    else:
        core.fit(
            problem,
            lam0,
            opts["dynamics"],
            opts["estimator"],
            iterations=iterations,
            optimizer="sgd" if isinstance(problem, QuadraticPair) else "adam",
            lr=opts["lr"],
            warm_start=opts.get("warm_start", False),
            outer_batches=opts.get("outer_batches", False),
            callback=callback,
            keep_history=False,
        )


def accuracy_of(problem: Hypercleaning, state: core.FitState) -> float:
    """Test accuracy of the method's current inner iterate (``w_T`` of its last unroll)."""
    if "state" in state.extra:
        w = inner_params(state, problem)
    elif "inner_params" in state.extra:
        w = state.extra["inner_params"]
    else:  # a cold-start unroll keeps no iterate: redo it (off the clock)
        dyn = METHODS["krmd_paper"][1]["dynamics"]
        w = core.hypergradient(problem, state.hparams, dyn, core.Truncated(K=1)).params
    return problem.metrics(w, state.hparams)["test_acc"]  # type: ignore[arg-type]


def distance(problem: QuadraticPair, state: core.FitState) -> float:
    lam = state.hparams
    assert isinstance(lam, torch.Tensor)  # the pair's λ is one tensor
    return problem.metrics(problem.init(lam), lam)["dist"]


QUAD_METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "soba": ("single", {"method": core.SOBA(inner_lr=0.3, outer_lr=0.05)}),
    "soba_decay": (
        "single",
        {"method": core.SOBA(inner_lr=0.5, outer_lr=0.2, schedule="inv_sqrt")},
    ),
    "saba": ("single", {"method": core.SABA(inner_lr=0.3, outer_lr=0.05)}),
    "f2sa": (
        "single",
        {"method": core.F2SA(inner_lr=0.3, outer_lr=0.05, penalty_growth=100.0, penalty_max=1e5)},
    ),
    "full_rmd_warm": (
        "fit",
        {
            "dynamics": core.GradientDescent(steps=10, lr=0.5),
            "estimator": core.Full(),
            "warm_start": True,
            "lr": 0.2,
        },
    ),
    "krmd_warm": (
        "fit",
        {
            "dynamics": core.GradientDescent(steps=10, lr=0.5),
            "estimator": core.Truncated(K=5),
            "warm_start": True,
            "lr": 0.2,
        },
    ),
}


def quadratic_pair(seed: int) -> QuadraticPair:
    """The quadratic pair of the benchmark: 40 inner and 10 outer batches."""
    return QuadraticPair(
        dim=50, n_hparams=10, n_inner=40, n_outer=10, mu=0.5, L=2.0, rho=1.0, seed=seed
    )


def first_reach(curve: list[tuple[float, float]], ok: Callable[[float], bool]) -> float | None:
    return next((t for t, m in curve if ok(m)), None)


def warm_up() -> None:
    """Pay torch's one-time lazy initialisation (the optimizers' first step imports seconds
    of modules) before any clock runs, as the service's worker does at start."""
    p = QuadraticPair(n_inner=2, n_outer=2)
    core.fit(p, p.initial_hparams(), core.GradientDescent(3), core.Truncated(2), iterations=2)
    core.fit_single_loop(p, p.initial_hparams(), core.SABA(), iterations=2)


def summarise(
    name: str, curves: list[list[tuple[float, float]]], quadratic: bool
) -> dict[str, Any]:
    if quadratic:
        reach = [first_reach(c, lambda m: m < DIST_TARGET) for c in curves]
        best = [min(m for _, m in c) for c in curves]
    else:
        reach = [first_reach(c, lambda m: m >= TARGET) for c in curves]
        best = [max(m for _, m in c) for c in curves]
    reached = [r for r in reach if r is not None]
    # the mean over the last 30% of the budget: what a run ends at, robust to the max of noise
    late = [statistics.mean(m for t, m in c if t >= 0.7 * c[-1][0]) for c in curves]
    return {
        "method": name,
        "time_to_target_s": reach,
        "median_time_s": statistics.median(reached) if len(reached) == len(reach) else None,
        "best": best,
        "median_best": statistics.median(best),
        "late": late,
        "median_late": statistics.median(late),
    }


def table_lines(rows: list[dict[str, Any]], quadratic: bool) -> list[str]:
    """The table of :func:`measure`'s rows as fixed-width text lines."""
    what = "||λ-λ*||" if quadratic else "test acc"
    target = f"{DIST_TARGET:g}" if quadratic else f"{TARGET}"
    lines = [
        f"{'method':<22} {'s to ' + target + ' (median)':>20}  {'per seed':<20} "
        f"{'best ' + what:<24} late (mean of last 30%)"
    ]
    for r in rows:
        med = "not reached" if r["median_time_s"] is None else f"{r['median_time_s']:.2f}"
        seeds = " ".join("-" if t is None else f"{t:.2f}" for t in r["time_to_target_s"])
        best = " ".join(f"{b:.4g}" for b in r["best"])
        late = " ".join(f"{b:.4g}" for b in r["late"])
        lines.append(f"{r['method']:<22} {med:>20}  {seeds:<20} {best:<24} {late}")
    return lines


def measure(
    *,
    quadratic: bool,
    data_dir: str,
    seeds: list[int],
    budget_s: float,
    every_s: float,
    methods: list[str] | None = None,
) -> dict[str, Any]:
    """Run every method on every seed; the rows, the curves and how they were measured.

    Raises:
        core.ConfigurationError: an unknown method name.
    """
    torch.set_num_threads(1)
    table = QUAD_METHODS if quadratic else METHODS
    names = methods or list(table)
    unknown = sorted(set(names) - set(table))
    if unknown:
        raise core.ConfigurationError(f"unknown methods {unknown}; known: {sorted(table)}")
    warm_up()
    evaluate = distance if quadratic else accuracy_of
    curves: dict[str, list[list[tuple[float, float]]]] = {n: [] for n in names}
    for seed in seeds:
        problems: dict[Any, Any] = {}
        for name in names:
            batch = table[name][1].get("batch")
            if batch not in problems:
                problems[batch] = (
                    quadratic_pair(seed) if quadratic else data_cleaning(data_dir, seed, batch)
                )
            curves[name].append(run_method(problems[batch], name, budget_s, evaluate, every_s))
    return {
        "benchmark": "quadratic_pair" if quadratic else "data_cleaning",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "seeds": seeds,
        "budget_s": budget_s,
        "target": DIST_TARGET if quadratic else TARGET,
        "rows": [summarise(name, curves[name], quadratic) for name in names],
        "curves": curves,
    }


def figure(curves: dict[str, list[list[tuple[float, float]]]], path: Path, quadratic: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (name, runs) in enumerate(curves.items()):
        for j, c in enumerate(runs):
            ax.plot([t for t, _ in c], [m for _, m in c], color=f"C{i}", alpha=0.8, lw=1.2,
                    label=name if j == 0 else None)  # fmt: skip
    if quadratic:
        ax.set_yscale("log")
        ax.axhline(DIST_TARGET, color="k", ls=":", lw=0.8)
        ax.set_ylabel("||λ - λ*||")
    else:
        ax.axhline(TARGET, color="k", ls=":", lw=0.8)
        ax.set_ylim(0.80, 0.875)
        ax.set_ylabel("test accuracy")
    ax.set_xscale("log")
    ax.set_xlabel("seconds (one thread)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
