"""What a hypergradient costs, and how many hyper-iterations a time budget leaves."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

import torch

import core
from core.problems.one_shot import OneShot, TaskBatch, evaluate
from core.problems.one_shot_tasks import task_generator as gen
from experiments.one_shot.config import Config, Method, Schedule


@dataclass(frozen=True)
class Cost:
    """One hypergradient of a method at the initial λ (the report's memory table).

    Attributes:
        eager_s: seconds of an eager call (what a cosine check costs).
        saved_bytes: peak bytes autograd saved (:class:`core.SavedTensorMeter`).
        stored_bytes: states kept outside autograd (``info["stored_bytes"]``).
        cuda_peak_bytes: peak CUDA allocation above the baseline; ``None`` off CUDA.
        probe_s: seconds of a call as training makes it (graphed when training is).
    """

    eager_s: float
    saved_bytes: int
    stored_bytes: int
    cuda_peak_bytes: int | None
    probe_s: float

    def to_json(self) -> dict[str, float]:
        """The fields in ``results.json``'s order; ``cuda_peak_bytes`` only on CUDA."""
        out: dict[str, float] = {
            "eager_s": self.eager_s,
            "saved_bytes": self.saved_bytes,
            "stored_bytes": self.stored_bytes,
        }
        if self.cuda_peak_bytes is not None:
            out["cuda_peak_bytes"] = self.cuda_peak_bytes
        out["probe_s"] = self.probe_s
        return out


def sync(device: torch.device) -> None:
    """Wait for the device, so that wall-clock times cover the work they time."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def probe(
    problem: OneShot,
    batch: TaskBatch,
    hp: dict[str, torch.Tensor],
    method: Method,
    device: torch.device,
) -> Cost:
    """Seconds per hypergradient (after a warm-up) and the memory one of them holds.

    Memory is measured on an eager call: a replayed CUDA graph (``core.Graphed``) records no
    saved tensors, and its pool holds what the eager call would.
    """
    dyn, est = method.dynamics, method.estimator
    problem.set_batch(batch)
    eager = est.estimator if isinstance(est, core.Graphed) else est
    core.hypergradient(problem, hp, dyn, eager)
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    t0 = time.perf_counter()
    with core.SavedTensorMeter() as meter:
        res = core.hypergradient(problem, hp, dyn, eager)
    sync(device)
    eager_s = time.perf_counter() - t0
    cuda_peak = torch.cuda.max_memory_allocated(device) - base if device.type == "cuda" else None
    if est is not eager:
        core.hypergradient(problem, hp, dyn, est)  # records the graph
        sync(device)
    t0 = time.perf_counter()
    core.hypergradient(problem, hp, dyn, est)
    sync(device)
    return Cost(
        eager_s=eager_s,
        saved_bytes=meter.peak,
        stored_bytes=res.info["stored_bytes"],
        cuda_peak_bytes=cuda_peak,
        probe_s=time.perf_counter() - t0,
    )


def schedule(
    cfg: Config,
    args: argparse.Namespace,
    costs: dict[str, Cost],
    test: OneShot,
    hp0: dict[str, torch.Tensor],
    methods: list[Method],
    began: float,
) -> Schedule:
    """Hyper-iterations (cut to ``--budget-s`` if given), curve and cosine intervals.

    With a budget, what does not scale with the iterations (curve points, cosine checks, the
    final evaluation, the depth sweep, time already spent) is estimated from the probes and
    one timed evaluation; the rest is shared by a common number of hyper-iterations.
    """
    iterations = cfg.iterations
    if args.budget_s is not None and not args.smoke:
        full_s = max(c.eager_s for c in costs.values())  # the cosine checks run eagerly
        t0 = time.perf_counter()
        evaluate(test, hp0, methods[0].dynamics, test.sample(gen(0), cfg.curve_tasks))
        eval_s = time.perf_counter() - t0
        n = len(methods)
        fixed = n * (args.curve_points + 1) * 2 * eval_s  # meta-test and meta-val curves
        fixed += n * eval_s * cfg.eval_tasks / cfg.curve_tasks  # final evaluation
        fixed += (n - 1) * args.cosine_points * full_s  # cosine checks
        fixed += 10 * full_s  # depth sweep: two full RMD and 22 K-RMD of mean depth ~18
        fixed += time.perf_counter() - began
        per_iter = 1.1 * sum(c.probe_s for c in costs.values())  # + the Adam steps
        iterations = max(1, min(iterations, int((args.budget_s - fixed) / per_iter)))
        probes = {k: round(c.probe_s, 3) for k, c in costs.items()}
        print(
            f"one-shot: {iterations} hyper-iterations per method fit --budget-s "
            f"{args.budget_s:.0f} (seconds per hypergradient: {probes}, "
            f"per evaluation of {cfg.curve_tasks} tasks: {eval_s:.2f}, fixed: {fixed:.0f})",
            file=sys.stderr,
        )
    return Schedule(
        iterations=iterations,
        eval_every=max(1, iterations // max(1, args.curve_points)),
        exact_every=max(1, iterations // max(1, args.cosine_points)),
    )
