"""Hybrid search against black-box search at equal compute (issue 23, item 6).

A linear regression with ``real`` informative columns and ``noise`` pure-noise columns and
one L2 penalty per column (``core.problems.FeatureRegularization``). Three ways to choose
the penalties, each given a compute budget counted in inner trainings (one run of the ``T``
inner steps: a hypergradient evaluation, or one black-box evaluation) and in seconds:

- ``hybrid``: Optuna's TPE over the outer learning rate (log) and ``K`` only; each trial
  learns every per-column penalty by truncated hypergradient descent (``iterations``
  hyper-iterations, keeping its best iterate, then one evaluation of it);
- ``blackbox``: TPE over the same per-column penalties (log scale), one inner training a
  trial;
- ``hybrid_pruned``: as ``hybrid``, with a median pruner stopping trials that fall behind
  (a trial costs what it ran), as a search study with a pruner does;
- ``shared``: TPE over one penalty shared by every column, one inner training a trial.

For each the best trial so far (by validation loss) is followed as compute grows; its test
RMSE is reported next to it. Prints a table and writes JSON (and a figure with ``--figure``)::

    python -m benchmarks.library.search_hybrid --seeds 0 1 2 --json out/search_hybrid.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import time
from pathlib import Path
from typing import Any, cast

import optuna
import torch

import core
from core.problems import FeatureRegularization, Splits

optuna.logging.set_verbosity(optuna.logging.WARNING)

# the log-penalty range black-box search draws from: exp(1) keeps the inner steps stable
LOW, HIGH = -10.0, 1.0
#: the service's default outer learning rate: the first trial of ``hybrid_first``
DEFAULT_LR = 0.1
Curve = list[tuple[int, float, float, float]]  # (inner trainings, seconds, val loss, test rmse)


def make_problem(seed: int, real: int, noise: int, n: int) -> FeatureRegularization:
    """Targets from ``real`` columns plus noise; ``noise`` more columns carry nothing."""
    g = torch.Generator().manual_seed(seed)
    d = real + noise
    coef = torch.zeros(d)
    coef[:real] = torch.randn(real, generator=g)
    arrays: dict[str, torch.Tensor] = {}
    for split, rows in (("train", n), ("val", n), ("test", 2000)):
        x = torch.randn(rows, d, generator=g)
        arrays[f"x_{split}"] = x
        arrays[f"y_{split}"] = x @ coef + 0.5 * torch.randn(rows, generator=g)
    return FeatureRegularization(Splits.from_arrays(arrays), model="linear")


def evaluate(problem: FeatureRegularization, log_pen: torch.Tensor, steps: int,
             lr: float) -> tuple[float, float]:  # fmt: skip
    """One inner training at these penalties: validation loss and test RMSE (``inf`` when
    the inner steps diverge)."""
    hp = {"feature_penalties": log_pen}
    try:
        res = core.hypergradient(problem, hp, core.GradientDescent(steps=steps, lr=lr),
                                 core.make_estimator("truncated", K=1))  # fmt: skip
    except core.DivergenceError:
        return math.inf, math.inf
    return res.outer_loss, problem.metrics(cast(torch.Tensor, res.params), hp)["test_rmse"]


class Tracker:
    """The best trial so far by validation loss, against compute spent."""

    def __init__(self) -> None:
        self.spent, self.t0, self.best = 0, time.perf_counter(), (math.inf, math.nan)
        self.curve: Curve = []

    def add(self, cost: int, val: float, test: float) -> None:
        self.spent += cost
        if val < self.best[0]:
            self.best = (val, test)
        self.curve.append((self.spent, time.perf_counter() - self.t0, *self.best))


class _Best:
    """A fit's callback keeping its best iterate.

    A hyper-iteration's record holds f at the iterate *before* its update (``core.fit``),
    while ``state.hparams`` is the iterate after it: the callback keeps the previous one,
    so the iterate it keeps is the one whose loss it saw. A trial keeps its best one (a run
    whose penalties grow until the inner steps diverge keeps the last good one), as a job's
    summary keeps ``best_outer_loss``.
    """

    def __init__(self, start: torch.Tensor, trial: optuna.Trial | None = None) -> None:
        self.loss: float = math.inf
        self.hparams: torch.Tensor | None = None
        self.prev = start.clone()
        self.trial, self.ran = trial, 0

    def __call__(self, record: dict[str, float], state: core.FitState) -> bool:
        self.ran += 1
        loss = record["outer_loss"]
        if loss < self.loss:
            self.loss, self.hparams = loss, self.prev
        hp = cast(dict[str, torch.Tensor], state.hparams)
        self.prev = hp["feature_penalties"].detach().clone()
        if self.trial is None:
            return False
        # the study's median pruner, as a search study prunes its members (stops the fit)
        self.trial.report(loss if math.isfinite(loss) else 1e30, self.ran)
        return self.trial.should_prune()


def hybrid(problem, budget: int, steps: int, lr: float, iterations: int, seed: int,
           prune: bool = False, first: bool = False,
           lr_range: tuple[float, float] = (1e-2, 1.0),
           first_lr: float = DEFAULT_LR) -> Curve:  # fmt: skip
    """TPE over the outer lr and K; hypergradients over every penalty.

    With ``prune``, a median pruner stops trials behind the finished ones (their compute is
    what they ran) and TPE leaves its random start after 3 trials rather than 10. With
    ``first``, the first trial is ``first_lr`` (the service's default, 0.1) and ``K = T``,
    as a study "around" a job starts from that job. ``lr_range``: the outer lr's (log).
    """
    track = Tracker()
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=3 if prune else 10)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=3)
    study = optuna.create_study(sampler=sampler, pruner=pruner)
    if first:
        study.enqueue_trial({"outer_lr": first_lr, "K": steps})
    while track.spent + iterations + 1 <= budget:
        trial = study.ask()
        outer_lr = trial.suggest_float("outer_lr", *lr_range, log=True)
        K = trial.suggest_categorical("K", [1, 10, steps])
        dyn = core.GradientDescent(steps=steps, lr=lr)
        start = problem.initial_hparams()
        best = _Best(start["feature_penalties"], trial if prune else None)
        with contextlib.suppress(core.DivergenceError):
            core.fit(problem, start, dyn,
                     core.make_estimator("truncated", K=K), iterations=iterations,
                     lr=outer_lr, keep_history=False, callback=best)  # fmt: skip
        val, test = math.inf, math.inf
        if best.hparams is not None:
            val, test = evaluate(problem, best.hparams, steps, lr)
        pruned = prune and best.ran < iterations and best.trial is not None
        if pruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, val if math.isfinite(val) else 1e30)
        track.add(best.ran + 1, val, test)
    return track.curve


def blackbox(problem, budget: int, steps: int, lr: float, seed: int, shared: bool) -> Curve:
    """TPE over the per-column penalties (or one shared), one inner training a trial."""
    track = Tracker()
    d = problem.data.n_features
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed, multivariate=True))
    for _ in range(budget):
        trial = study.ask()
        if shared:
            pen = torch.full((d,), trial.suggest_float("log_penalty", LOW, HIGH))
        else:
            pen = torch.tensor([trial.suggest_float(f"p{j}", LOW, HIGH) for j in range(d)])
        val, test = evaluate(problem, pen, steps, lr)
        study.tell(trial, val if math.isfinite(val) else 1e30)
        track.add(1, val, test)
    return track.curve


def at(curve: Curve, compute: int) -> tuple[float, float, float] | None:
    """``(seconds, best val, its test rmse)`` once ``compute`` inner trainings were spent."""
    done = [c for c in curve if c[0] <= compute]
    return done[-1][1:] if done else None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--real", type=int, default=5)
    p.add_argument("--noise", type=int, default=25)
    p.add_argument("--rows", type=int, default=60, help="training (and validation) rows")
    p.add_argument("--steps", type=int, default=50, help="inner steps T")
    p.add_argument("--inner-lr", type=float, default=0.1)
    p.add_argument("--iterations", type=int, default=19, help="hyper-iterations a trial")
    p.add_argument(
        "--outer-lr",
        type=float,
        nargs=2,
        default=[1e-2, 1.0],
        metavar=("LOW", "HIGH"),
        help="the hybrid's outer lr range (log)",
    )
    p.add_argument(
        "--first-lr",
        type=float,
        default=DEFAULT_LR,
        help="the outer lr of hybrid_first's first trial",
    )
    p.add_argument("--hybrid-budget", type=int, default=60)
    p.add_argument("--blackbox-budget", type=int, default=600)
    p.add_argument("--json", type=Path)
    p.add_argument("--figure", type=Path)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    runs: dict[str, list[Curve]] = {"hybrid": [], "hybrid_pruned": [], "hybrid_first": [],
                                     "hybrid_first_pruned": [], "blackbox": [],
                                     "shared": []}  # fmt: skip
    variants = (("hybrid", False, False), ("hybrid_pruned", True, False),
                ("hybrid_first", False, True), ("hybrid_first_pruned", True, True))  # fmt: skip
    for seed in a.seeds:
        problem = make_problem(seed, a.real, a.noise, a.rows)
        for name, prune, first in variants:
            runs[name].append(hybrid(problem, a.hybrid_budget, a.steps, a.inner_lr,
                                     a.iterations, seed, prune, first,
                                     tuple(a.outer_lr), a.first_lr))  # fmt: skip
        for name, shared in (("blackbox", False), ("shared", True)):
            runs[name].append(blackbox(problem, a.blackbox_budget, a.steps, a.inner_lr,
                                       seed, shared))  # fmt: skip
    marks = sorted({a.hybrid_budget, a.blackbox_budget // 10, a.blackbox_budget // 4,
                    a.blackbox_budget // 2,
                    a.blackbox_budget, a.hybrid_budget // 2})  # fmt: skip
    rows = []
    for name, curves in runs.items():
        for m in marks:
            pts = [at(c, m) for c in curves]
            if any(x is None for x in pts) or (name.startswith("hybrid") and m > a.hybrid_budget):
                continue
            got: list[tuple[float, float, float]] = [x for x in pts if x is not None]
            rows.append({"method": name, "inner_trainings": m,
                         "seconds": _mean([g[0] for g in got]),
                         "val_loss": _mean([g[1] for g in got]),
                         "val_loss_std": _std([g[1] for g in got]),
                         "test_rmse": _mean([g[2] for g in got]),
                         "test_rmse_std": _std([g[2] for g in got])})  # fmt: skip
    print(f"{'method':>19} {'inner':>6} {'seconds':>8} {'val loss':>17} {'test rmse':>17}")
    for r in rows:
        print(f"{r['method']:>19} {r['inner_trainings']:>6} {r['seconds']:>8.2f} "
              f"{r['val_loss']:>9.4f} ± {r['val_loss_std']:<6.3f}"
              f"{r['test_rmse']:>9.4f} ± {r['test_rmse_std']:<6.3f}")  # fmt: skip
    return save(a, rows, runs)


def save(a: argparse.Namespace, rows: list[dict[str, Any]], runs: dict[str, Any]) -> dict[str, Any]:
    """The run's record (arguments, table rows, thinned curves, machine), written to
    ``--json`` and drawn to ``--figure`` when given; returned either way."""
    out = {"args": {k: str(v) for k, v in vars(a).items()}, "rows": rows,
           "curves": {k: [thin(c) for c in v] for k, v in runs.items()},
           "machine": platform.platform(), "torch": torch.__version__,
           "optuna": optuna.__version__}  # fmt: skip
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(out, indent=1))
    if a.figure:
        _figure(runs, a.figure)
    return out


def thin(curve: list) -> list:
    """The points where the best so far changes, and the last: the JSON's curves (the table
    reads the full ones)."""
    return [c for i, c in enumerate(curve)
            if i == 0 or i == len(curve) - 1 or c[2:] != curve[i - 1][2:]]  # fmt: skip


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def _std(xs: list[float]) -> float:
    m = _mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0


_COLORS = {
    "hybrid": "C0",
    "hybrid_pruned": "C3",
    "hybrid_first": "C4",
    "hybrid_first_pruned": "C5",
    "blackbox": "C1",
    "shared": "C2",
}


def _figure(runs: dict[str, list[Curve]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, curves in runs.items():
        for i, c in enumerate(curves):
            xs, ys = [x[0] for x in c], [x[2] for x in c]
            ax.step(
                xs, ys, where="post", label=name if i == 0 else None, color=_COLORS.get(name, "C7")
            )
    ax.set_xscale("log")
    ax.set_xlabel("inner trainings")
    ax.set_ylabel("best validation loss")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
