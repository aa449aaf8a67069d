"""Task interaction (Section 4.2.2, Appendix G.2): Table 3 and Figure 6 on available data.

``bilevel reproduce task-interaction --out DIR`` learns the task-similarity matrix ``C`` and
the ridge ``ρ`` of V coupled linear models with K-RMD and full RMD, for a 10-task and a
many-task setting, over several trials with early stopping, and writes ``report.md``
(our Table 3 beside the paper's, time and memory per method) and ``fig6_task_interaction.png``
(upper loss, exact-gradient norm and cosine similarity against hyper-iteration).

The paper's CIFAR-10/100 features from an ImageNet ResNet-18 cannot be had here (no
lossless CIFAR, no pretrained weights), so the settings are the closest available:

* 10-task: MNIST (or ``--ten-task-dataset``), 10 classes = 10 tasks, m = 50 training and
  50 validation examples (5 per class, as the paper's m = 50 for CIFAR-10), the rest test.
* many-task: 100 Omniglot characters = 100 tasks, m = 300 training and 300 validation
  examples (3 per class, as the paper's m = 300 for CIFAR-100), the other 14 drawings
  of each character test. Features are raw pixels in ``[0, 1]`` (28x28, plus a bias).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

import core
from core.problems.task_interaction import TaskInteraction, load_task_data
from core.tree import as_tensor
from experiments import data_dir_setting
from experiments._report import Progress, default_data_dir, markdown_table, savefig

T, GAMMA = 100, 0.1  # Appendix G.2: 100 steps of gradient descent with learning rate 0.1
SMOKE_T = 10
# Table 3 of the paper: (mean acc, std, avg iterations, seconds per iteration).
PAPER_TABLE3 = {
    "10-task": {1: (61.11, 1.23, 3300, 0.8), 5: (61.33, 1.08, 4950, 1.3),
                25: (61.31, 1.24, 4825, 1.4), T: (61.28, 1.21, 4500, 2.2)},
    "many-task": {1: (34.37, 0.63, 7440, 1.0), 5: (34.34, 0.68, 8805, 1.4),
                  25: (34.51, 0.69, 8660, 1.6), T: (34.70, 0.64, 5670, 2.8)},
}  # fmt: skip
PAPER_NAME = {"10-task": "CIFAR-10", "many-task": "CIFAR-100"}
SETTINGS = ("10-task", "many-task")


def add_arguments(parser: argparse.ArgumentParser, data_dir: str | None = None) -> None:
    """Options of ``bilevel reproduce task-interaction``.

    ``data_dir`` is the caller's data-directory setting, the default of ``--data-dir``;
    without it, ``$BILEVEL_DATA_DIR`` (:func:`experiments.data_dir_setting`).
    """
    configured = data_dir if data_dir is not None else data_dir_setting()
    parser.add_argument("--out", type=Path, required=True, help="directory for figures and report")
    parser.add_argument(
        "--data-dir", type=Path, default=default_data_dir(configured),
        help="folder with mnist/ and omniglot/ (default: $BILEVEL_DATA_DIR, else ../shared/data)",
    )  # fmt: skip
    parser.add_argument("--setting", choices=(*SETTINGS, "both"), default="both")
    parser.add_argument(
        "--ten-task-dataset", "--dataset", dest="dataset", default="mnist",
        choices=("mnist", "fashion-mnist", "digits"), help="data of the 10-task setting",
    )  # fmt: skip
    parser.add_argument(
        "--K", type=int, nargs="+", default=[1, 5, 25, T],
        help="truncation depths in [1, 100]; K >= T is full RMD",
    )  # fmt: skip
    parser.add_argument(
        "--T", type=int, default=None, help=f"inner steps (default: the paper's {T}; smoke: 10)"
    )
    parser.add_argument("--iterations", type=int, default=3000, help="most hyper-iterations")
    parser.add_argument(
        "--patience", type=int, default=500,
        help="stop when test accuracy has not improved for this many iterations (App. G.2)",
    )  # fmt: skip
    parser.add_argument("--trials", type=int, default=10, help="independent splits (seeds)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first trial")
    parser.add_argument("--lr", type=float, default=0.02, help="Adam step size on λ = {B, ν}")
    parser.add_argument("--eval-every", type=int, default=10, help="test accuracy every N")
    parser.add_argument(
        "--exact-every", type=int, default=25,
        help="exact d_λ f for Figure 6 every N iterations (first trial only)",
    )  # fmt: skip
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--smoke", action="store_true",
        help="tiny configuration for tests: digits for both settings, T=10, 2 trials, 4 iterations",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Fit every (setting, method, trial), measure costs, write the figure and report."""
    cfg = _config(args)
    Ks = sorted(set(args.K))
    if any(k < 1 or k > T for k in Ks):
        raise core.ConfigurationError(f"--K values must be in [1, {T}], got {args.K}")
    steps = cfg["T"]
    Ks = sorted({min(k, steps) for k in Ks})
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    dyn = core.GradientDescent(steps=steps, lr=GAMMA)
    settings = SETTINGS if args.setting == "both" else (args.setting,)
    progress = Progress(total=len(settings) * len(Ks) * cfg["trials"], label="task-interaction")
    results: dict = {}
    costs: dict = {}
    for setting in settings:
        spec = cfg["settings"][setting]
        data = load_task_data(spec["dataset"], cfg["data_dir"], n_tasks=spec["n_tasks"],
                              seed=cfg["seed"])  # fmt: skip
        for K in Ks:
            for trial in range(cfg["trials"]):
                seed = cfg["seed"] + trial
                progress.step(f"{setting} {_method(K, dyn.steps)} trial {trial + 1}")
                problem = TaskInteraction.from_data(
                    data, n_train=spec["m"], n_val=spec["m"], seed=seed, device=args.device
                )
                exact_every = cfg["exact_every"] if trial == 0 else 0
                results[setting, K, trial] = _fit(problem, dyn, K, cfg, exact_every)
        costs[setting] = _costs(problem, dyn, Ks, args.device)
    progress.close()
    _figure6(out, results, settings, Ks, steps)
    elapsed = time.perf_counter() - began
    (out / "report.md").write_text(_report(args, cfg, settings, Ks, results, costs, elapsed))
    print(f"wrote {out / 'report.md'} and fig6_task_interaction.png in {elapsed:.1f} s")
    return 0


def _config(args: argparse.Namespace) -> dict:
    for name in ("iterations", "patience", "trials", "eval_every", "exact_every"):
        if getattr(args, name) < 1:
            raise core.ConfigurationError(f"--{name.replace('_', '-')} must be >= 1")
    if not args.lr > 0:
        raise core.ConfigurationError(f"--lr must be > 0, got {args.lr}")
    cfg = {
        "iterations": args.iterations, "patience": args.patience, "trials": args.trials,
        "eval_every": args.eval_every, "exact_every": args.exact_every, "lr": args.lr,
        "seed": args.seed, "data_dir": str(args.data_dir),
        "settings": {
            "10-task": {"dataset": args.dataset, "n_tasks": 10, "m": 50},
            "many-task": {"dataset": "omniglot", "n_tasks": 100, "m": 300},
        },
    }  # fmt: skip
    cfg["T"] = args.T or (SMOKE_T if args.smoke else T)
    if cfg["T"] < 1:
        raise core.ConfigurationError(f"--T must be >= 1, got {cfg['T']}")
    if args.smoke:
        cfg.update(iterations=4, patience=4, trials=2, eval_every=2, exact_every=2)
        cfg["settings"] = {
            "10-task": {"dataset": "digits", "n_tasks": 10, "m": 50},
            "many-task": {"dataset": "digits", "n_tasks": 10, "m": 30},
        }
    return cfg


def _method(K: int, steps: int) -> str:
    return "Full RMD" if steps <= K else f"{K}-RMD"


def _estimator(K: int, steps: int) -> core.Estimator:
    return core.Full() if steps <= K else core.Truncated(K=K)


def _fit(problem: TaskInteraction, dyn, K: int, cfg: dict, exact_every: int) -> dict:
    """Adam on ``{B, ν}``; test accuracy every ``eval_every``; early stopping (App. G.2)."""
    best = {"acc": -1.0, "iteration": 0}

    def evaluate(iteration: int, lam) -> bool:
        res = core.hypergradient(problem, lam, dyn, core.Truncated(K=1))
        acc = problem.metrics(as_tensor(res.params, "params"), lam)["test_acc"]
        if acc > best["acc"]:
            best.update(acc=acc, iteration=iteration)
        return iteration - best["iteration"] >= cfg["patience"]

    def callback(record, state) -> bool:
        tau = record["iteration"]
        if tau % cfg["eval_every"] == 0 or tau == cfg["iterations"]:
            return evaluate(tau, state.hparams)
        return False

    lam0 = problem.initial_hparams()
    evaluate(0, lam0)
    res = core.fit(
        problem, lam0, dyn, _estimator(K, dyn.steps), iterations=cfg["iterations"],
        optimizer="adam", lr=cfg["lr"], exact_every=exact_every, exact_estimator=core.Full(),
        callback=callback,
    )  # fmt: skip
    h = res.history
    return {
        "best_acc": best["acc"],
        "best_iteration": best["iteration"],
        "stopped_at": h["iteration"][-1],
        "sec_per_iter": sum(h["time_s"]) / len(h["time_s"]),
        "history": h,
    }


def _costs(problem: TaskInteraction, dyn, Ks, device: str) -> dict[int, tuple[float, int]]:
    """One hypergradient per method at the initial λ: seconds and bytes held for backward."""
    lam = problem.initial_hparams()
    core.hypergradient(problem, lam, dyn, core.Truncated(K=1))  # warm-up
    out = {}
    for K in Ks:
        if str(device).startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with core.SavedTensorMeter() as meter:
            res = core.hypergradient(problem, lam, dyn, _estimator(K, dyn.steps))
        if str(device).startswith("cuda"):
            torch.cuda.synchronize()
        out[K] = (time.perf_counter() - t0, meter.peak + res.info["stored_bytes"])
    return out


def _figure6(out: Path, results: dict, settings, Ks, steps: int) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(settings), 3, figsize=(14, 3.8 * len(settings)), squeeze=False)
    for row, setting in zip(axes, settings):
        for K in Ks:
            h = results[setting, K, 0]["history"]
            row[0].plot(h["iteration"], h["outer_loss"], label=_method(K, steps))
            pairs = [(i, n, c) for i, n, c in zip(h["iteration"], h["exact_norm"], h["cosine"])
                     if n == n]  # fmt: skip
            row[1].semilogy(
                [p[0] for p in pairs], [p[1] for p in pairs], ".-", label=_method(K, steps)
            )
            row[2].plot([p[0] for p in pairs], [p[2] for p in pairs], ".-", label=_method(K, steps))
        row[0].set(title=f"{setting}: upper-level loss", xlabel="hyper-iteration")
        row[1].set(title=r"$\|d_\lambda f\|$", xlabel="hyper-iteration")
        row[2].set(title=r"cos($h_{T-K}$, $d_\lambda f$)", xlabel="hyper-iteration")
        row[0].legend(fontsize=8)
    savefig(fig, out / "fig6_task_interaction.png")


def _report(args, cfg, settings, Ks, results, costs, elapsed) -> str:
    rows = []
    for setting in settings:
        paper = PAPER_TABLE3[setting]
        for K in Ks:
            runs = [results[setting, K, t] for t in range(cfg["trials"])]
            accs = [100 * r["best_acc"] for r in runs]
            sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
            p = paper.get(T if cfg["T"] <= K else K)
            rows.append([
                setting, _method(K, cfg["T"]), f"{statistics.mean(accs):.2f} ± {sd:.2f}",
                f"{p[0]:.2f} ± {p[1]:.2f}" if p else "–",
                f"{statistics.mean(r['best_iteration'] for r in runs):.0f}",
                f"{statistics.mean(r['stopped_at'] for r in runs):.0f}", f"{p[2]}" if p else "–",
                f"{statistics.mean(r['sec_per_iter'] for r in runs):.3f}", f"{p[3]}" if p else "–",
                f"{costs[setting][K][1] / 2**20:.2f}",
            ])  # fmt: skip
    head = ["setting", "method", "test acc %", "paper", "best iter", "stopped at", "paper iter",
            "s / iter", "paper s / iter", "MiB held (one hypergradient)"]  # fmt: skip
    lines = []
    for setting in settings:
        s = cfg["settings"][setting]
        lines.append(f"- **{setting}** (paper: {PAPER_NAME[setting]}): {s['dataset']}, "
                     f"{s['n_tasks']} tasks, m = {s['m']} training and {s['m']} validation "
                     f"examples per trial, the rest test.")  # fmt: skip
    cmd = (
        f"bilevel reproduce task-interaction --out {args.out} --setting {args.setting} "
        f"--dataset {args.dataset} --K {' '.join(map(str, Ks))} --iterations {cfg['iterations']} "
        f"--patience {cfg['patience']} --trials {cfg['trials']} --seed {cfg['seed']} "
        f"--lr {cfg['lr']} --T {cfg['T']}" + (" --smoke" if args.smoke else "")
    )
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    dev = args.device if args.device != "cpu" else f"CPU, {os.cpu_count()} cores"
    settings_text = "\n".join(lines)
    seeds = f"{cfg['seed']}..{cfg['seed'] + cfg['trials'] - 1}"
    return f"""# Task interaction (Section 4.2.2, Appendix G.2), reproduced on available data

Command: `{cmd}`
Run {now} on {platform.machine()} ({dev}, {torch.get_num_threads()} torch threads), torch
{torch.__version__}, float32, in {elapsed:.0f} s.

## Setup

The paper's tasks are CIFAR-10/100 classes on ImageNet ResNet-18 features; neither lossless
CIFAR nor pretrained weights are available here, so we keep the structure (one task per
class, few examples per task, the paper's m) on raw pixels:

{settings_text}

Inner problem: V linear models (rows of W) from W_0 = 0, T = {cfg["T"]} steps of gradient descent
with γ = {GAMMA}, g = mean training cross-entropy + Σ C_ij‖w_i - w_j‖² + ρΣ‖w_v‖², C = A + Aᵀ,
A = softplus(B), ρ = softplus(ν). Starting point: every C_ij = 1/V (so the coupling's
curvature is the same for 10 and 100 tasks and γ = 0.1 is stable), ρ = 0.01. Outer loss:
validation cross-entropy; Adam with step {cfg["lr"]} on λ = {{B, ν}} (the paper gives none).
Early stopping as in Appendix G.2: the test accuracy is checked every {cfg["eval_every"]}
hyper-iterations and a trial stops when it has not improved for {cfg["patience"]} of them
(at most {cfg["iterations"]}); the accuracy reported is the best one, averaged over
{cfg["trials"]} trials (different splits, seeds {seeds}). Like the
paper's, this selection on test accuracy is optimistic; it is the same for every method.

## Table 3: test accuracy

{markdown_table(head, rows)}

Our features and data differ from the paper's, so only the comparison between methods
within a row group is meaningful, not the absolute accuracy.

## Figure 6 (`fig6_task_interaction.png`)

First trial of each setting: upper-level loss, norm of the exact hypergradient (full RMD,
every {cfg["exact_every"]} iterations) and cosine similarity between h_(T-K) and d_λ f.
"""
