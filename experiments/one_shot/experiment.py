"""The run itself: data, probes, one training per method, the depth sweep, the files."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from core.problems.one_shot import OneShot, evaluate
from core.problems.one_shot_tasks import OneShotSplits, task_generator
from experiments._report import Progress
from experiments.one_shot import budget
from experiments.one_shot.config import Config, Schedule, config_from_args, methods
from experiments.one_shot.depth import DepthSweep, depth_sweep
from experiments.one_shot.figures import figures
from experiments.one_shot.report import Results, report
from experiments.one_shot.training import CurveTasks, MethodResult, train


def run(args: argparse.Namespace) -> int:
    """Meta-train every method, evaluate, and write the report and figures."""
    cfg = config_from_args(args)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    began = time.perf_counter()
    splits = OneShotSplits.from_omniglot(
        args.data_dir,
        seed=args.seed,
        meta_batch=cfg.meta_batch,
        width=cfg.width,
        queries=cfg.queries,
        device=device,
    )
    train_set, val, test = splits.train, splits.val, splits.test
    hp0 = train_set.initial_hparams(seed=args.seed, lr_scale=1.0, rho=args.rho)
    curves = CurveTasks(
        test=test.sample(task_generator(args.seed + 1), cfg.curve_tasks),
        val=val.sample(task_generator(args.seed + 2), cfg.curve_tasks),
    )
    final_test = test.sample(task_generator(args.seed + 3), cfg.eval_tasks)
    graphed = args.cuda_graph == "on" or (args.cuda_graph == "auto" and device.type == "cuda")
    todo = methods(cfg.T, cfg.K, args.short_horizon, args.inner_lr, graphed)

    probe_batch = train_set.sample(task_generator(args.seed + 4))
    costs = {m.name: budget.probe(train_set, probe_batch, hp0, m, device) for m in todo}
    schedule = budget.schedule(cfg, args, costs, test, hp0, todo, began)

    ticks = max(1, min(schedule.iterations, 50))
    progress = Progress(total=len(todo) * ticks + 2, label="one-shot")
    runs: dict[str, MethodResult] = {}
    for m in todo:
        training = train(
            m,
            train_set,
            hp0,
            args=args,
            schedule=schedule,
            curves=curves,
            progress=progress,
            ticks=ticks,
        )
        final = evaluate(test, training.hparams, m.dynamics, final_test)
        runs[m.name] = MethodResult(training=training, final=final, cost=costs[m.name])
        slug = m.name.lower().replace(" ", "_")
        torch.save(training.hparams, out / f"hparams_{slug}.pt")  # to re-evaluate later
        # a report after every method: a run cut short still leaves what it finished
        _write(out, args, cfg, schedule, runs, DepthSweep(), train_set, began)
    progress.step("relative error against depth")
    # at the λ full RMD reached (else the last method's): where Figure 7's curves end
    at = "Full RMD" if "Full RMD" in runs else todo[len(cfg.K) - 1].name
    depth = depth_sweep(train_set, runs[at].training.hparams, todo[0].dynamics, args.seed, at)
    progress.step("figures")
    elapsed = _write(out, args, cfg, schedule, runs, depth, train_set, began)
    progress.close()
    print(f"wrote {out / 'report.md'} and 6 figures in {elapsed:.1f} s")
    return 0


def _write(
    out: Path,
    args: argparse.Namespace,
    cfg: Config,
    schedule: Schedule,
    runs: dict[str, MethodResult],
    depth: DepthSweep,
    problem: OneShot,
    began: float,
) -> float:
    """Figures, ``results.json`` and ``report.md`` for the methods done so far; the elapsed s."""
    results = Results(
        config=cfg,
        schedule=schedule,
        seed=args.seed,
        device=str(torch.device(args.device)),
        runs=runs,
        depth=depth,
        elapsed_s=time.perf_counter() - began,
    )
    figures(out, runs, depth)
    (out / "results.json").write_text(json.dumps(results.to_json(), indent=1, default=float))
    (out / "report.md").write_text(report(args, results, problem))
    return results.elapsed_s
