"""Hybrid search against black-box search at equal compute, on hypercleaning (issue 23, item 6).

The paper's data hypercleaning (``core.problems.Hypercleaning``) on scikit-learn's digits:
``--train`` training examples, half of their labels replaced by random ones, one weight
``σ(λ_i)`` per training example, and a clean validation set. Three ways to choose the
weights, each given a compute budget counted in inner trainings (one run of the ``T`` inner
steps: a hypergradient evaluation, or one black-box evaluation) and in seconds:

- ``hybrid``: Optuna's TPE over the outer learning rate (log) and ``K`` only; each trial
  learns every per-example weight by truncated hypergradient descent (``iterations``
  hyper-iterations, keeping its best iterate, then one evaluation of it);
- ``hybrid_first``: the same, its first trial the service's defaults (outer lr 0.1, ``K = T``)
  as a study "around" a job starts from that job;
- ``blackbox``: TPE over the same per-example ``λ_i`` (``--train`` dimensions), one inner
  training a trial;
- ``shared``: TPE over one ``λ`` shared by every example (it can only rescale the data
  term against the ridge: no example is told apart from another).

The best trial so far (by validation loss) is followed as compute grows, with its test loss
(cross-entropy on the held-out rest of digits) and test accuracy next to it. Prints a table
and writes JSON (and a figure with ``--figure``)::

    python -m benchmarks.library.search_hybrid_cleaning --seeds 0 1 2 \\
        --json benchmarks/library/results/search_hybrid_cleaning.json \\
        --figure benchmarks/library/results/search_hybrid_cleaning.png
"""

from __future__ import annotations

import argparse
import contextlib
import math
import time
from pathlib import Path
from typing import Any

import optuna
import torch
import torch.nn.functional as F

import core
from benchmarks.library.search_hybrid import _mean, _std, at, save
from core.problems import Hypercleaning

optuna.logging.set_verbosity(optuna.logging.WARNING)

# the range of each λ_i black-box search draws from: σ(±5) is 0.007 or 0.993
LOW, HIGH = -5.0, 5.0
#: the service's defaults for a job: the first trial of ``hybrid_first``
DEFAULT_LR = 0.1
Curve = list[tuple[int, float, float, float, float]]  # (trainings, s, val, test loss, test acc)


def make_problem(seed: int, n_train: int, n_val: int) -> Hypercleaning:
    """Digits, ``n_train`` half-corrupted training examples, ``n_val`` clean ones; test: rest."""
    return Hypercleaning.from_dataset("digits", n_train=n_train, n_val=n_val, seed=seed,
                                      dtype=torch.float64)  # fmt: skip


def evaluate(problem: Hypercleaning, lam: torch.Tensor, steps: int,
             lr: float) -> tuple[float, float, float]:  # fmt: skip
    """One inner training at ``λ``: validation loss, test loss, test accuracy."""
    try:
        res = core.hypergradient(problem, lam, core.GradientDescent(steps=steps, lr=lr),
                                 core.make_estimator("truncated", K=1))  # fmt: skip
    except core.DivergenceError:
        return math.inf, math.inf, 0.0
    W = res.params
    assert isinstance(W, torch.Tensor) and problem.x_test is not None  # a split with a test set
    assert problem.y_test is not None
    with torch.no_grad():
        test_loss = float(F.cross_entropy(problem.x_test @ W.T, problem.y_test))
    return res.outer_loss, test_loss, problem.metrics(W, lam)["test_acc"]


class Tracker:
    """The best trial so far by validation loss, against compute spent."""

    def __init__(self) -> None:
        self.spent, self.t0 = 0, time.perf_counter()
        self.best: tuple[float, float, float] = (math.inf, math.nan, math.nan)
        self.curve: Curve = []

    def add(self, cost: int, val: float, test: float, acc: float) -> None:
        self.spent += cost
        if val < self.best[0]:
            self.best = (val, test, acc)
        self.curve.append((self.spent, time.perf_counter() - self.t0, *self.best))


class _Best:
    """A fit's callback keeping its best iterate.

    A record's outer loss is f at the iterate before that hyper-iteration's update, and
    ``state.hparams`` the iterate after it: the previous one is the one the loss is of.
    """

    def __init__(self, start: torch.Tensor) -> None:
        self.loss, self.ran = math.inf, 0
        self.lam: torch.Tensor | None = None
        self.prev = start.clone()

    def __call__(self, record: dict[str, float], state: core.FitState) -> bool:
        self.ran += 1
        if record["outer_loss"] < self.loss:
            self.loss, self.lam = record["outer_loss"], self.prev
        assert isinstance(state.hparams, torch.Tensor)
        self.prev = state.hparams.detach().clone()
        return False


def hybrid(problem: Hypercleaning, budget: int, steps: int, lr: float, iterations: int,
           seed: int, first: bool = False) -> Curve:  # fmt: skip
    """TPE over the outer lr and K; hypergradients over every example's weight."""
    track = Tracker()
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
    if first:
        study.enqueue_trial({"outer_lr": DEFAULT_LR, "K": steps})
    while track.spent + iterations + 1 <= budget:
        trial = study.ask()
        outer_lr = trial.suggest_float("outer_lr", 1e-2, 1.0, log=True)
        K = trial.suggest_categorical("K", [1, 10, steps])
        start = problem.initial_hparams()
        best = _Best(start)
        with contextlib.suppress(core.DivergenceError):
            core.fit(problem, start, core.GradientDescent(steps=steps, lr=lr),
                     core.make_estimator("truncated", K=K), iterations=iterations,
                     lr=outer_lr, keep_history=False, callback=best)  # fmt: skip
        val, test, acc = math.inf, math.inf, 0.0
        if best.lam is not None:
            val, test, acc = evaluate(problem, best.lam, steps, lr)
        study.tell(trial, val if math.isfinite(val) else 1e30)
        track.add(best.ran + 1, val, test, acc)
    return track.curve


def blackbox(problem: Hypercleaning, budget: int, steps: int, lr: float, seed: int,
             shared: bool) -> Curve:  # fmt: skip
    """TPE over every example's λ (or one shared), one inner training a trial."""
    track = Tracker()
    n = len(problem.y_train)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed, multivariate=True))
    for _ in range(budget):
        trial = study.ask()
        if shared:
            lam = torch.full((n,), trial.suggest_float("lam", LOW, HIGH), dtype=torch.float64)
        else:
            lam = torch.tensor([trial.suggest_float(f"l{i}", LOW, HIGH) for i in range(n)],
                               dtype=torch.float64)  # fmt: skip
        val, test, acc = evaluate(problem, lam, steps, lr)
        study.tell(trial, val if math.isfinite(val) else 1e30)
        track.add(1, val, test, acc)
    return track.curve


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--train", type=int, default=200, help="training examples (λ's dimension)")
    p.add_argument("--val", type=int, default=200)
    p.add_argument("--steps", type=int, default=50, help="inner steps T")
    p.add_argument("--inner-lr", type=float, default=1.0)
    p.add_argument("--iterations", type=int, default=19, help="hyper-iterations a trial")
    p.add_argument("--hybrid-budget", type=int, default=60)
    p.add_argument("--blackbox-budget", type=int, default=600)
    p.add_argument("--json", type=Path)
    p.add_argument("--figure", type=Path)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    runs: dict[str, list[Curve]] = {"hybrid": [], "hybrid_first": [], "blackbox": [],
                                     "shared": []}  # fmt: skip
    for seed in a.seeds:
        problem = make_problem(seed, a.train, a.val)
        for name, first in (("hybrid", False), ("hybrid_first", True)):
            runs[name].append(hybrid(problem, a.hybrid_budget, a.steps, a.inner_lr,
                                     a.iterations, seed, first))  # fmt: skip
        for name, shared in (("blackbox", False), ("shared", True)):
            runs[name].append(blackbox(problem, a.blackbox_budget, a.steps, a.inner_lr,
                                       seed, shared))  # fmt: skip
    marks = sorted({a.hybrid_budget // 2, a.hybrid_budget, a.blackbox_budget // 10,
                    a.blackbox_budget // 4, a.blackbox_budget})  # fmt: skip
    rows = []
    for name, curves in runs.items():
        for m in marks:
            pts = [at(c, m) for c in curves]  # type: ignore[arg-type]
            if any(x is None for x in pts) or (name.startswith("hybrid") and m > a.hybrid_budget):
                continue
            got = [x for x in pts if x is not None]
            cols = {"seconds": 0, "val_loss": 1, "test_loss": 2, "test_acc": 3}
            row: dict[str, Any] = {"method": name, "inner_trainings": m}
            for key, i in cols.items():
                row[key] = _mean([g[i] for g in got])
                if key != "seconds":
                    row[f"{key}_std"] = _std([g[i] for g in got])
            rows.append(row)
    print(f"{'method':>13} {'inner':>6} {'seconds':>8} {'val loss':>17} {'test loss':>17} "
          f"{'test acc':>8}")  # fmt: skip
    for r in rows:
        print(f"{r['method']:>13} {r['inner_trainings']:>6} {r['seconds']:>8.2f} "
              f"{r['val_loss']:>9.4f} ± {r['val_loss_std']:<6.3f}"
              f"{r['test_loss']:>9.4f} ± {r['test_loss_std']:<6.3f}"
              f"{r['test_acc']:>8.3f}")  # fmt: skip
    return save(a, rows, runs)


if __name__ == "__main__":
    main()
