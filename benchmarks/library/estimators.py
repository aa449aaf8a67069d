"""Time and memory of every estimator for a few horizons T and depths K.

    .venv/bin/python -m benchmarks.library.estimators [--T 50 100 200] [--repeats 5] [--json PATH]
    .venv/bin/python -m benchmarks.library.estimators --memory-T 100 250 500 1000 2000  # vs T
    .venv/bin/python -m benchmarks.library.estimators --one-shot [--T 50]  # the one-shot network

The problem is a weighted softmax regression (data hypercleaning in miniature: one weight
``sigmoid(λ_i)`` per training example) on random data, float32 on the CPU. Time is the median
over repeats, the methods interleaved in each repeat so that machine noise hits all alike,
and is also given relative to the *floor*: ``T`` plain inner steps with no graph at all.
Memory is the peak of bytes held for backward (``core.SavedTensorMeter``) plus the states an
estimator stores itself (``info["stored_bytes"]``).

``--memory-T`` measures memory only, on the paper-sized hypercleaning shape (M = 7850 inner
parameters, N = 5000 hyperparameters), for each T: it checks Table 1's claims, K-RMD flat in
T, full RMD linear in T, and the iterate-storing mode at most K+1 copies of w plus one step's
graph. ``--one-shot`` times the estimators on the one-shot Omniglot network of Figure 8
(width 64, 28x28 random images, meta-batch 4; App. G.3) instead of the softmax regression.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

import core
from benchmarks.library.problems import ClosedForm, WeightedSoftmax, floor


def methods(T: int) -> dict:
    out = {"full": core.Full(), "checkpointed": core.Checkpointed()}
    for K in (1, 5, 25):
        if K < T:
            out[f"truncated K={K}"] = core.Truncated(K)
            out[f"truncated K={K} iterates"] = core.Truncated(K, store="iterates")
    out["implicit cg"] = core.Implicit(solver="cg", iters=20)
    return out


def measure(problem, T: int, repeats: int, lr: float = 1.0) -> list[dict]:
    hparams = problem.initial_hparams()
    dyn = core.GradientDescent(steps=T, lr=lr)
    ests = methods(T)
    times: dict[str, list[float]] = {name: [] for name in ["floor", *ests]}
    for _ in range(repeats + 1):  # the first round warms up and is dropped
        for name in times:
            t0 = time.perf_counter()
            if name == "floor":
                floor(problem, hparams, dyn)
            else:
                core.hypergradient(problem, hparams, dyn, ests[name])
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["floor"][1:])
    rows = [{"T": T, "method": "floor", "time_ms": 1e3 * base, "vs_floor": 1.0,
             "saved_bytes": 0, "stored_bytes": 0}]  # fmt: skip
    for name, est in ests.items():
        with core.SavedTensorMeter() as meter:
            res = core.hypergradient(problem, hparams, dyn, est)
        med = statistics.median(times[name][1:])
        rows.append({
            "T": T, "method": name, "time_ms": 1e3 * med, "vs_floor": med / base,
            "saved_bytes": meter.peak, "stored_bytes": res.info["stored_bytes"],
        })  # fmt: skip
    return rows


def memory_sweep(problem, Ts: list[int], Ks: tuple[int, ...] = (1, 5, 25)) -> list[dict]:
    """Bytes held by each reverse estimator against ``T`` (one call each, no timing)."""
    hparams = problem.initial_hparams()
    w_bytes = problem.init(hparams).numel() * hparams.element_size()
    step = _one_step_bytes(problem, hparams)
    rows: list[dict[str, Any]] = []
    for T in Ts:
        dyn = core.GradientDescent(steps=T, lr=1.0)
        ests: dict[str, core.Estimator] = {"full": core.Full(), "checkpointed": core.Checkpointed()}
        for K in Ks:
            ests[f"truncated K={K}"] = core.Truncated(K)
            ests[f"truncated K={K} iterates"] = core.Truncated(K, store="iterates")
        for name, est in ests.items():
            with core.SavedTensorMeter() as meter:
                res = core.hypergradient(problem, hparams, dyn, est)
            total = meter.peak + res.info["stored_bytes"]
            rows.append({
                "T": T, "method": name, "saved_bytes": meter.peak,
                "stored_bytes": res.info["stored_bytes"], "total_bytes": total,
                "w_copies": total / w_bytes, "one_step_graph_bytes": step,
                "w_bytes": w_bytes,
            })  # fmt: skip
    return rows


def _one_step_bytes(problem, hparams) -> int:
    dyn = core.GradientDescent(steps=1, lr=1.0)
    with core.SavedTensorMeter() as meter:
        core.hypergradient(problem, hparams, dyn, core.Truncated(1))
    return meter.peak


def _print_memory(rows: list[dict]) -> None:
    Ts = sorted({r["T"] for r in rows})
    names = list(dict.fromkeys(r["method"] for r in rows))
    by = {(r["T"], r["method"]): r for r in rows}
    print("total bytes held (saved for backward + stored states), MiB; and in copies of w")
    print(f"{'method':<26}" + "".join(f"{'T=' + str(T):>12}" for T in Ts) + f"{'copies@max':>12}")
    for n in names:
        mib = "".join(f"{by[T, n]['total_bytes'] / 2**20:>12.1f}" for T in Ts)
        print(f"{n:<26}{mib}{by[Ts[-1], n]['w_copies']:>12.1f}")
    step, w = rows[0]["one_step_graph_bytes"], rows[0]["w_bytes"]
    print(f"one step's graph: {step / 2**20:.2f} MiB; w: {w / 2**20:.3f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, nargs="+", default=None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memory-T", type=int, nargs="+", default=None)
    parser.add_argument("--one-shot", action="store_true")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/estimators.json"))
    args = parser.parse_args()
    if args.memory_T:
        # the paper-sized hypercleaning shape
        rows = memory_sweep(ClosedForm(n=5000, d=785), args.memory_T)
        _print_memory(rows)
        _write(args.json.with_name("memory.json"), rows, "hypercleaning n=5000 d=785 float32")
        return
    if args.one_shot:
        problem, what = _one_shot(), "one-shot Omniglot network width 64, 28x28, meta-batch 4"
        rows = [row for T in args.T or [50] for row in measure(problem, T, args.repeats, lr=0.1)]
    else:
        problem, what = WeightedSoftmax(), "weighted softmax n=1000 d=64 classes=10 float32"
        rows = [row for T in args.T or [50, 100, 200] for row in measure(problem, T, args.repeats)]
    print(f"{'T':>5} {'method':<26} {'ms':>9} {'x floor':>8} {'saved KiB':>10} {'stored KiB':>10}")
    for r in rows:
        print(f"{r['T']:>5} {r['method']:<26} {r['time_ms']:>9.2f} {r['vs_floor']:>8.2f} "
              f"{r['saved_bytes'] / 1024:>10.1f} {r['stored_bytes'] / 1024:>10.1f}")  # fmt: skip
    path = args.json.with_name("estimators_one_shot.json") if args.one_shot else args.json
    _write(path, rows, what)


def _one_shot():
    """Figure 8's network on random 28x28 images (timing needs no real data)."""
    from core.problems.one_shot import OneShot

    problem = OneShot(torch.rand(20, 20, 28, 28, generator=torch.Generator().manual_seed(0)))
    problem.set_batch(problem.sample(torch.Generator().manual_seed(1)))
    return problem


def _write(path: Path, rows: list[dict], problem: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.machine(), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "problem": problem,
    }  # fmt: skip
    path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
