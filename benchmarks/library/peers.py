"""Ours against higher and torchopt: same problem, same method, time ratio and agreement.

    .venv/bin/pip install -e ".[bench]"      # higher and torchopt
    .venv/bin/python -m benchmarks.library.peers [--n 5000 --d 785 --T 100 --repeats 5]
    .venv/bin/python -m benchmarks.library.peers --n 600 --d 65 --threads 1 --repeats 9 --compile

The problem is data hypercleaning's shape (Section 4.2.1): a linear softmax classifier
``W ∈ R^{10 x d}`` trained by T steps of gradient descent (γ = 1) on the ``σ(λ_i)``-weighted
mean cross-entropy plus ``1e-3 ||W||²``, with ``f`` the validation cross-entropy; random data
of the paper's sizes (M = 7850, N = 5000 by default), float32 on the CPU.

Methods: full RMD and K-RMD. A peer has no truncated estimator (see issue 2), so for it the
first ``T-K`` steps are run without a graph by hand (``torch.no_grad`` for higher,
``torchopt.stop_gradient`` after them for torchopt): the fairest version of the peer. Ours
runs twice: with autograd's inner gradient (the same arithmetic as the peers) and with the
closed-form inner gradient (``inner_grad``). Every timing is the median of ``--repeats``
rounds after a warm-up, all methods interleaved in each round; ``rel diff`` is
``||ours - peer|| / ||ours||`` of the hypergradients.

Then one table per path, generic (``∇_W g`` by autograd: every user model) and closed
(``inner_grad``): ours eagerly and, with ``--compile``, as ``core.Compiled`` (the job spec's
``hypergradient.compile``), against the fastest of the peers on that path: the hand-written
loop ("plain": ``torch.autograd.grad`` with ``create_graph`` for the last K steps and no
graph before, or the closed form), higher and torchopt (which can only differentiate the
loss). ``compile s`` is a compiled estimator's first call; the first compiled row of a run
pays the cold compilation, later rows reuse the kernels it built, as a worker's jobs do.

With ``--compile`` a toy compiles first, as a worker's job process does when it starts
(``worker.runner.warm_up``): Inductor's one-time set-up is not a job's compile cost.
``default`` is what a job of ``--jobs`` hyper-iterations left on ``hypergradient.compile:
"auto"`` runs and how fast, for each place its compile finds its work
(``worker.compile_cache.CACHES``): ``cold`` (the first job of its kind and shapes on a
worker: the path's first compiled row), ``disk`` (torch.compile's disk cache warm, a worker
restarted: timed after ``torch.compiler.reset()``) and ``memory`` (a later job of the same
key on a running worker: the later compiled rows); ``fresh`` is ``cold`` on a worker that
measured nothing yet. As the worker does, the job's first hypergradient runs eagerly and
``worker.compile_choice.choose`` decides, with the speed-up measured here once the worker
has measured it (disk, memory), before that (cold) the prior of the worker's other keys
(``worker.compile_cache.Prior``: here the speed-ups of the path's other rows, the same kind
and method at other depths), and with nothing measured (fresh) the ``--payoff`` rule; a
compiled job pays ``eager + compile + (n-2) compiled``, an eager one ``n eager``; where that
says no for a key not measured (fresh, cold) and the run covers the compile, the job
compiles in the background (``B``: eager while a child compiles, then from the disk cache). ``x 100
disk`` is the fastest peer's ``n`` calls over that. ``eager/plain`` is the
eager path's time over the hand-written loop's; ``--instructions`` also counts it in
instructions (callgrind, which the machine's load cannot move): see :func:`instructions`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

import core
from benchmarks.library.problems import ClosedForm, WeightedSoftmax, floor
from worker.compile_choice import BACKGROUND, CACHES, Prior, choose, spare_core

#: the columns of ``default``: a first job on a worker that measured nothing, then CACHES
_FIRSTS = ("fresh", *CACHES)


def _higher(problem, lam, T, K):
    import higher

    model = nn.Linear(problem.X.shape[1], problem.shape[0], bias=False)
    nn.init.zeros_(model.weight)
    lam = lam.detach().requires_grad_(True)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)

    def inner(weight):
        return problem.inner_loss(weight, lam)

    with torch.no_grad():  # the steps K-RMD drops, run by hand
        for _ in range(T - K):
            model.weight -= _grad(inner, model.weight)  # lr = 1
    with higher.innerloop_ctx(model, opt, copy_initial_weights=True) as (fmodel, diffopt):
        for _ in range(K):
            diffopt.step(inner(fmodel.weight))
        outer = problem.outer_loss(fmodel.weight, lam)
        (grad,) = torch.autograd.grad(outer, lam)
    return grad


def _grad(loss_fn, weight):
    with torch.enable_grad():
        w = weight.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(loss_fn(w), w)
    return g


def _torchopt(problem, lam, T, K):
    import torchopt

    model = nn.Linear(problem.X.shape[1], problem.shape[0], bias=False)
    nn.init.zeros_(model.weight)
    lam = lam.detach().requires_grad_(True)
    opt = torchopt.MetaSGD(model, lr=1.0)
    for t in range(T):
        if t == T - K:
            torchopt.stop_gradient(model)
            torchopt.stop_gradient(opt)
        opt.step(problem.inner_loss(model.weight, lam))
    outer = problem.outer_loss(model.weight, lam)
    (grad,) = torch.autograd.grad(outer, lam)
    return grad


def _ours(
    problem: core.BilevelProblem, lam: torch.Tensor, dyn: core.GradientDescent, est: core.Estimator
) -> torch.Tensor:
    grad = core.hypergradient(problem, lam, dyn, est).grad
    assert isinstance(grad, torch.Tensor)  # one tensor of hyperparameters here
    return grad


def _plain(problem, lam, T, K, grad_fn=None):
    """The hand-written loop: no graph for the first ``T-K`` steps, ``create_graph`` after.

    ``grad_fn`` is a closed-form ``∇_W g``; without it ``torch.autograd.grad`` gives it.
    """
    lam_leaf = lam.detach().requires_grad_(True)
    w = torch.zeros(problem.shape, dtype=lam.dtype)
    with torch.no_grad():
        for _ in range(T - K):
            w = w - (grad_fn(w, lam) if grad_fn else _grad(lambda v: problem.inner_loss(v, lam), w))
    if grad_fn is None:
        w = w.requires_grad_(True)
    for _ in range(K):
        if grad_fn is None:
            (g,) = torch.autograd.grad(problem.inner_loss(w, lam_leaf), w, create_graph=True)
        else:
            g = grad_fn(w, lam_leaf)
        w = w - g
    (grad,) = torch.autograd.grad(problem.outer_loss(w, lam_leaf), lam_leaf)
    return grad


def _timed_first(fn: Callable[[], torch.Tensor], first: dict[str, float], name: str):
    """``fn`` whose first call's time (a compilation) is kept in ``first[name]``."""

    def call() -> torch.Tensor:
        if name in first:
            return fn()
        t0 = time.perf_counter()
        out = fn()
        first[name] = time.perf_counter() - t0
        return out

    return call


def run(
    n: int,
    d: int,
    T: int,
    Ks: list[int],
    repeats: int,
    peers: list[str],
    compile: bool = False,
    jobs: tuple[int, ...] = (100, 1000),
    payoff: float = 10.0,
) -> dict:
    if compile:
        _warm_up()
    auto, closed = WeightedSoftmax(n=n, d=d), ClosedForm(n=n, d=d)
    lam = torch.zeros(n)
    dyn = core.GradientDescent(steps=T, lr=1.0)
    # the floor returns nothing; every other function the hypergradient it computed
    fns: dict[str, Callable[[], Any]] = {"floor": lambda: floor(closed, lam, dyn)}
    first: dict[str, float] = {}
    for K in Ks:
        est = core.Full() if K == T else core.Truncated(K)
        tag = "full" if K == T else f"K={K}"
        fns[f"ours {tag}"] = partial(_ours, auto, lam, dyn, est)
        fns[f"ours+closed {tag}"] = partial(_ours, closed, lam, dyn, est)
        fns[f"plain {tag}"] = partial(_plain, auto, lam, T, K)
        fns[f"plain+closed {tag}"] = partial(_plain, closed, lam, T, K, closed.inner_grad)
        if compile:
            # one compiled estimator per path, as a worker keeps one per job
            for path, problem in (("ours+compiled", auto), ("ours+closed+compiled", closed)):
                name = f"{path} {tag}"
                fns[name] = _timed_first(
                    partial(_ours, problem, lam, dyn, core.Compiled(est)), first, name
                )
        if "higher" in peers:
            fns[f"higher {tag}"] = partial(_higher, auto, lam, T, K)
        if "torchopt" in peers:
            fns[f"torchopt {tag}"] = partial(_torchopt, auto, lam, T, K)
    # ours only (no peer has them): exact checkpointing and K-RMD storing iterates
    fns["ours+closed checkpointed"] = partial(_ours, closed, lam, dyn, core.Checkpointed())
    fns["ours+closed K=5 iterates"] = partial(
        _ours, closed, lam, dyn, core.Truncated(min(5, T), store="iterates")
    )
    times: dict[str, list[float]] = {k: [] for k in fns}
    results: dict[str, torch.Tensor] = {}
    for _ in range(repeats + 1):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            out = fn()
            times[name].append(time.perf_counter() - t0)
            results[name] = out
    med = {k: statistics.median(v[1:]) for k, v in times.items()}
    rows = []
    for name in fns:
        tag = name.split(" ", 1)[1] if " " in name else ""
        mine = results.get(f"ours {tag}")
        row = {"method": name, "time_ms": 1e3 * med[name], "vs_floor": med[name] / med["floor"]}
        if name != "floor" and mine is not None:
            row["vs_ours_closed"] = med[name] / med[f"ours+closed {tag}"]
            row["rel_diff"] = float((results[name] - mine).norm() / mine.norm())
        if name in first:
            row["first_call_s"] = first[name]
        rows.append(row)
    tags = ["full" if K == T else f"K={K}" for K in Ks]
    paths = _paths(tags, med, results, first, peers, compile)
    if compile:
        disk = _disk_compiles(auto, closed, lam, dyn, Ks[0], T)
        for path, table in paths.items():
            _defaults(table, jobs, payoff, disk[path])
    return {"rows": rows, "paths": paths}


def _warm_up() -> None:
    """Compile a toy, as a worker's job process does when it starts, then drop its code.

    Inductor's one-time set-up (modules, the C++ toolchain's probes) is then not counted as
    the first row's compile cost, which a worker's job never pays.
    """
    toy = core.problems.Toy()
    dyn = core.GradientDescent(steps=3, lr=0.1)
    _ours(toy, toy.initial_hparams(), dyn, core.Compiled(core.Truncated(2)))
    torch.compiler.reset()


def _disk_compiles(auto, closed, lam, dyn, K, T) -> dict[str, float]:
    """Per path, the first call of a new compiled estimator after ``torch.compiler.reset()``.

    The code compiled in this process is gone, the disk caches are warm: what a job pays on
    a restarted worker that compiled its key before.
    """
    out = {}
    for path, problem in (("generic", auto), ("closed", closed)):
        torch.compiler.reset()
        est = core.Compiled(core.Full() if K == T else core.Truncated(K))
        t0 = time.perf_counter()
        _ours(problem, lam, dyn, est)
        out[path] = time.perf_counter() - t0
    return out


def _defaults(table: list[dict], jobs: tuple[int, ...], payoff: float, disk_s: float) -> None:
    """What "auto" runs for jobs of ``jobs`` hyper-iterations, per cache, and its speed-up.

    A compile's cost is its first call less one compiled call: ``cold`` the path's first
    compiled row, ``memory`` the median over the later rows, ``disk`` ``disk_s``.
    """
    extra = [r["compile_s"] - 1e-3 * r["ours_compiled_ms"] for r in table]
    cost = {"cold": extra[0], "disk": disk_s - 1e-3 * table[0]["ours_compiled_ms"],
            "memory": statistics.median(extra[1:] or extra)}  # fmt: skip
    speedups = [r["ours_eager_ms"] / r["ours_compiled_ms"] for r in table]
    for i, row in enumerate(table):
        row["compile_costs_s"] = cost
        others = tuple(s for j, s in enumerate(speedups) if j != i)
        prior = Prior(others, cost["cold"], "kind|method", len(others)) if others else None
        for n in jobs:
            for first in _FIRSTS:
                cache = "cold" if first == "fresh" else first
                prior_here = prior if first == "cold" else None
                _default(row, n, payoff, first, max(cost[cache], 0.0), prior_here,
                         max(cost["disk"], 0.0))  # fmt: skip


def _default(
    row: dict, n: int, payoff: float, first: str, compile_s: float, prior: Prior | None,
    disk_s: float,
) -> None:  # fmt: skip
    """A job of ``n`` hypergradients on ``compile: "auto"`` whose compile costs ``compile_s``.

    As :class:`worker.compile_choice.AutoCompiled`: the first hypergradient runs eagerly and
    is timed; the first compiled call costs ``compile_s`` more than the others; a speed-up is
    known to the worker once it compiled the key (``disk``, ``memory``), before that
    ``prior`` (``cold``), on a worker that measured nothing neither (``fresh``). A job that
    compiles in the background (``worker.compile_background``, no speed-up measured for its
    key) runs eagerly while a child compiles (``compile_s`` and one compiled call), then
    compiles from the disk cache the child filled (``disk_s``) and runs compiled; the
    contention for the CPU meanwhile is not modelled (70 ms eager against 66 alone, measured
    with a forked child at n=600, d=65, full RMD, one thread, on the 2-core VM).
    """
    eager, compiled = row["ours_eager_ms"] * 1e-3, row["ours_compiled_ms"] * 1e-3
    cache = "cold" if first == "fresh" else first
    choice = choose(
        "auto", eager_run_s=eager * n, compile_s=compile_s + compiled, payoff=payoff,
        speedup=None if cache == "cold" else eager / compiled, cache=cache, prior=prior,
        background=BACKGROUND if spare_core() else None,
    )  # fmt: skip
    total = eager + compile_s + (n - 1) * compiled if choice.used else n * eager
    if choice.background:  # the eager calls while the child compiles, then from disk
        k = min(n, 1 + math.ceil((compile_s + compiled) / eager))
        total = k * eager + (disk_s + (n - k) * compiled if k < n else 0.0)
    row[f"default_{n}_{first}"] = {
        "compiled": choice.used or choice.background, "background": choice.background,
        "speedup": n * row["fastest_peer_ms"] * 1e-3 / total,
        "reason": choice.reason,
    }  # fmt: skip


def _paths(tags, med, results, first, peers, compile) -> dict[str, list[dict]]:
    """Per path (generic: autograd's ``∇_W g``; closed: ``inner_grad``), ours against peers.

    The peers are the hand-written loop (with the path's ``∇_W g``), higher and torchopt
    (both differentiate the loss: they have no closed-form hook); ``speedup`` is the fastest
    peer's time over ours, eager and compiled.
    """
    out: dict[str, list[dict]] = {}
    for path, suffix in (("generic", ""), ("closed", "+closed")):
        table = []
        for tag in tags:
            peer_names = {"plain": f"plain{suffix} {tag}"}
            peer_names.update({p: f"{p} {tag}" for p in peers})
            ref = results[f"plain{suffix} {tag}"]
            fastest = min(med[v] for v in peer_names.values())
            row: dict = {"method": tag, "fastest_peer_ms": 1e3 * fastest}
            ours = {"eager": f"ours{suffix} {tag}"}
            if compile:
                ours["compiled"] = f"ours{suffix}+compiled {tag}"
            for kind, name in ours.items():
                row[f"ours_{kind}_ms"] = 1e3 * med[name]
                row[f"speedup_{kind}"] = fastest / med[name]
                row[f"rel_diff_{kind}"] = float((results[name] - ref).norm() / ref.norm())
            if compile:
                row["compile_s"] = first[ours["compiled"]]
            row["eager_over_plain"] = med[ours["eager"]] / med[peer_names["plain"]]
            for peer, name in peer_names.items():
                row[f"{peer}_ms"] = 1e3 * med[name]
                row[f"rel_diff_{peer}"] = float((results[name] - ref).norm() / ref.norm())
            table.append(row)
        out[path] = table
    return out


def _print_paths(paths: dict[str, list[dict]], peers: list[str], jobs: tuple[int, ...]) -> None:
    kinds = ["eager", "compiled"] if "speedup_compiled" in paths["generic"][0] else ["eager"]
    defaults = [(n, c) for n in jobs for c in _FIRSTS] if len(kinds) == 2 else []
    for path, table in paths.items():
        print(f"\n{path} path (rel diff: against the plain loop)")
        head = f"{'method':<7}" + "".join(f" {'ours ' + k:>14}" for k in kinds)
        head += "".join(f" {p + ' ms':>11}" for p in ["plain", *peers])
        head += "".join(f" {'x ' + k:>10}" for k in kinds)
        head += "".join(f" {f'x {n} {c}':>12}" for n, c in defaults)
        print(head + f" {'eager/plain':>12} {'rel diff':>9}")
        for r in table:
            line = f"{r['method']:<7}"
            line += "".join(f" {r[f'ours_{k}_ms']:>14.1f}" for k in kinds)
            line += "".join(f" {r[p + '_ms']:>11.1f}" for p in ["plain", *peers])
            line += "".join(f" {r[f'speedup_{k}']:>10.2f}" for k in kinds)
            for n, c in defaults:
                d = r[f"default_{n}_{c}"]
                mark = "B" if d["background"] else "C" if d["compiled"] else "E"
                line += f" {d['speedup']:>9.2f} {mark} "
            line += f" {r['eager_over_plain']:>12.3f}"
            diff = max(v for k, v in r.items() if k.startswith("rel_diff"))
            print(line + f" {diff:>9.1e}")
        if defaults:
            costs = ", ".join(f"{c} {v:.2f} s" for c, v in table[0]["compile_costs_s"].items())
            print(
                f"compile costs (first call less a compiled one): {costs}; C compiled, "
                "B compiled in the background, E eager"
            )


def _counted(n: int, d: int, T: int, Ks: list[int]) -> dict[str, Callable[[], Any]]:
    """The methods :func:`instructions` counts, in order: ours eager and plain per ``K``."""
    problem, lam = WeightedSoftmax(n=n, d=d), torch.zeros(n)
    dyn = core.GradientDescent(steps=T, lr=1.0)
    fns: dict[str, Callable[[], Any]] = {}
    for K in Ks:
        tag = "full" if K == T else f"K={K}"
        est = core.Full() if K == T else core.Truncated(K)
        fns[f"ours {tag}"] = partial(_ours, problem, lam, dyn, est)
        fns[f"plain {tag}"] = partial(_plain, problem, lam, T, K)
    return fns


def _count_child(n: int, d: int, T: int, Ks: list[int], calls: int) -> None:
    """Under callgrind: each method's ``calls`` calls between two ``os.getppid()`` marks."""
    fns = _counted(n, d, T, Ks)
    for fn in fns.values():  # warm-up: lazy initialisation, allocator caches
        fn()
    os.getppid()
    for fn in fns.values():
        for _ in range(calls):
            fn()
        os.getppid()


def instructions(n: int, d: int, T: int, Ks: list[int], calls: int) -> list[dict]:
    """Instructions per hypergradient of ours (eager, generic path) and of the plain loop.

    Wall time on a shared machine moves with its load; instructions executed do not. One
    child process runs every method once (warm-up), then each ``calls`` times, under
    ``valgrind --tool=callgrind --dump-before=os_getppid*``: callgrind writes its counts and
    zeroes them at each ``os.getppid()``, so the dump after a method's calls holds exactly
    them (no start-up, import or warm-up). ``overhead`` is ours over plain, less one.
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
               "--dump-before=os_getppid*", sys.executable, "-m", "benchmarks.library.peers",
               "--instructions-child", "--threads", "1", "--n", str(n), "--d", str(d),
               "--T", str(T), "--calls", str(calls), "--K", *map(str, Ks)]  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True)
        dumps = sorted(Path(tmp).glob("cg.out.*"), key=lambda f: int(f.suffix[1:]))
        totals = [_totals(f) for f in dumps]
    names = list(_counted(n, d, T, Ks))  # dump 1 opens the first method's calls
    per_call = {name: totals[i + 1] / calls for i, name in enumerate(names)}
    rows = []
    for name in names[::2]:
        tag = name.split(" ", 1)[1]
        ours, plain = per_call[name], per_call[f"plain {tag}"]
        rows.append({"method": tag, "ours_instructions": ours, "plain_instructions": plain,
                     "overhead": ours / plain - 1})  # fmt: skip
    return rows


def _totals(dump: Path) -> int:
    """The ``totals:`` line of a callgrind dump (instructions, the only event counted)."""
    for line in dump.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise ValueError(f"no totals in {dump}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--d", type=int, default=785)
    parser.add_argument("--T", type=int, default=100)
    parser.add_argument("--K", type=int, nargs="+", default=[1, 5, 25])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument(
        "--compile", action="store_true", help="also time core.Compiled (first call compiles)"
    )
    parser.add_argument(
        "--jobs", type=int, nargs="+", default=[100, 1000],
        help="hyper-iterations of the jobs whose compile: auto choice is shown (default)",
    )  # fmt: skip
    parser.add_argument(
        "--instructions", action="store_true",
        help="also count the eager path's and the plain loop's instructions (callgrind)",
    )  # fmt: skip
    parser.add_argument("--calls", type=int, default=2, help="calls counted per method")
    parser.add_argument("--instructions-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--payoff", type=float, default=10.0, help="as the worker's setting")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/peers.json"))
    args = parser.parse_args(argv)
    peers = []
    for name in ("higher", "torchopt"):
        try:
            __import__(name)
            peers.append(name)
        except ImportError:
            print(f"{name} not installed: skipped (pip install -e '.[bench]')")
    if args.threads:
        torch.set_num_threads(args.threads)
    Ks = sorted({*args.K, args.T})
    if args.instructions_child:
        _count_child(args.n, args.d, args.T, Ks, args.calls)
        return 0
    out = run(
        args.n, args.d, args.T, Ks, args.repeats, peers, args.compile, tuple(args.jobs),
        args.payoff,
    )  # fmt: skip
    threads = torch.get_num_threads()
    print(f"n={args.n} d={args.d} T={args.T}, median of {args.repeats}, {threads} threads")
    print(f"{'method':<28} {'ms':>9} {'x floor':>8} {'x ours+closed':>14} {'rel diff':>9}")
    for r in out["rows"]:
        ratio = f"{r['vs_ours_closed']:.2f}" if "vs_ours_closed" in r else ""
        diff = f"{r['rel_diff']:.1e}" if "rel_diff" in r else ""
        print(f"{r['method']:<28} {r['time_ms']:>9.1f} {r['vs_floor']:>8.2f} {ratio:>14} {diff:>9}")
    _print_paths(out["paths"], peers, tuple(args.jobs))
    if args.instructions:
        out["instructions"] = instructions(args.n, args.d, args.T, Ks, args.calls)
        print(f"\ninstructions per hypergradient (callgrind, {args.calls} calls each)")
        for r in out["instructions"]:
            counts = f"ours {r['ours_instructions']:>14.4g} plain {r['plain_instructions']:>14.4g}"
            print(f"{r['method']:<7} {counts} overhead {r['overhead']:>+8.2%}")
    out["meta"] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.machine(), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "n": args.n, "d": args.d, "T": args.T,
        "compile": args.compile, "jobs": args.jobs, "payoff": args.payoff,
        "calls": args.calls,
    }  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
