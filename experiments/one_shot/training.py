"""Meta-training one method: Adam on λ over a fixed task sequence, with learning curves."""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import torch

import core
from core.problems.one_shot import OneShot, TaskBatch, evaluate
from core.problems.one_shot_tasks import task_generator as gen
from experiments._report import Progress
from experiments.one_shot.budget import Cost
from experiments.one_shot.config import Method, Schedule

# the history columns a report needs (the exact-gradient ones only where checks ran)
HISTORY = ("iteration", "outer_loss", "cosine", "rel_error")


@dataclass
class Curve:
    """Learning curves on fixed meta-test and meta-validation tasks (Figure 7, left)."""

    iteration: list[int] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)
    val_error: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Training:
    """What meta-training one method produced.

    Attributes:
        hparams: the final λ.
        iterations: hyper-iterations run.
        sec_per_iter: median seconds of one hyper-iteration (estimate plus update).
        wall_s: the whole training's wall time, evaluations included.
        history: :data:`HISTORY` columns of :func:`core.fit`'s history.
        curve: the learning curves.
        gamma: the learned inner step size γ.
        rho: the learned ``ρ_3, ρ_4, ρ_5``.
    """

    hparams: dict[str, torch.Tensor]
    iterations: int
    sec_per_iter: float
    wall_s: float
    history: dict[str, list[float]]
    curve: Curve
    gamma: float
    rho: list[float]


@dataclass(frozen=True)
class MethodResult:
    """One method's training, its final meta-test evaluation and its probed cost."""

    training: Training
    final: dict[str, float]
    cost: Cost

    def to_json(self) -> dict[str, Any]:
        """The method's entry of ``results.json`` (everything but λ, which has its own file)."""
        t = self.training
        return {
            "iterations": t.iterations,
            "sec_per_iter": t.sec_per_iter,
            "wall_s": t.wall_s,
            "history": t.history,
            "curve": {
                "iteration": t.curve.iteration,
                "test_accuracy": t.curve.test_accuracy,
                "val_error": t.curve.val_error,
            },
            "gamma": t.gamma,
            "rho": t.rho,
            "final": self.final,
            **self.cost.to_json(),
        }


@dataclass(frozen=True)
class CurveTasks:
    """The fixed tasks the learning curves are measured on, the same for every method."""

    test: TaskBatch
    val: TaskBatch


def train(
    method: Method,
    problem: OneShot,
    hp0: dict[str, torch.Tensor],
    *,
    args: argparse.Namespace,
    schedule: Schedule,
    curves: CurveTasks,
    progress: Progress,
    ticks: int,
) -> Training:
    """Adam on λ with a fresh meta-batch per hyper-iteration (the same sequence per method).

    ``ticks`` is how many progress steps the run announces.
    """
    name, dyn, est = method.name, method.dynamics, method.estimator
    iterations = schedule.iterations
    every_tick = max(1, iterations // ticks)
    tasks = gen(args.seed + 10)
    problem.set_batch(problem.sample(tasks))
    curve = Curve()

    def point(tau: int, hp: Any) -> None:
        curve.iteration.append(tau)
        curve.test_accuracy.append(evaluate(problem, hp, dyn, curves.test)["query_accuracy"])
        curve.val_error.append(1 - evaluate(problem, hp, dyn, curves.val)["query_accuracy"])

    point(0, hp0)
    is_exact = est.exact  # its cosine with full RMD is 1 by definition

    def callback(record: dict[str, float], state: core.FitState) -> None:
        tau = int(record["iteration"])
        problem.set_batch(problem.sample(tasks))  # the next hyper-iteration's tasks
        if tau % schedule.eval_every == 0 or tau == iterations:
            point(tau, state.hparams)
        if tau % every_tick == 0 and progress.done < progress.total:
            progress.step(f"{name} {tau}/{iterations} f={record['outer_loss']:.3f}")

    began = time.perf_counter()
    result = core.fit(
        problem,
        hp0,
        dyn,
        est,
        iterations=iterations,
        optimizer="adam",
        lr=args.outer_lr,
        exact_every=0 if is_exact else schedule.exact_every,
        callback=callback,
    )
    wall = time.perf_counter() - began
    h = result.history
    times = h["time_s"][1:] or h["time_s"]
    hp = result.hparams
    assert isinstance(hp, dict)  # OneShot's λ is a dict of named tensors
    return Training(
        hparams=hp,
        iterations=iterations,
        sec_per_iter=statistics.median(times),
        wall_s=wall,
        history={k: h[k] for k in h if k in HISTORY},
        curve=curve,
        gamma=float(dyn.lr * torch.exp(hp["log_lr"])),
        rho=torch.nn.functional.softplus(hp["rho"]).tolist(),
    )
