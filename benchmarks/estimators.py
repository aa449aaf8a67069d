"""Time and memory of every estimator for a few horizons T and depths K.

    .venv/bin/python -m benchmarks.estimators [--T 50 100 200] [--repeats 5] [--json PATH]

The problem is a weighted softmax regression (data hypercleaning in miniature: one weight
``sigmoid(λ_i)`` per training example) on random data, float32 on the CPU. Time is the median
over repeats, the methods interleaved in each repeat so that machine noise hits all alike,
and is also given relative to the *floor*: ``T`` plain inner steps with no graph at all.
Memory is the peak of bytes held for backward (``core.SavedTensorMeter``) plus the states an
estimator stores itself (``info["stored_bytes"]``).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

import core


class WeightedSoftmax(core.BilevelProblem):
    """``g = mean_i σ(λ_i) CE(W x_i, y_i) + 1e-3 ||W||²``, ``f`` = validation CE."""

    def __init__(self, n: int = 1000, d: int = 64, classes: int = 10, seed: int = 0):
        gen = torch.Generator().manual_seed(seed)
        self.X = torch.randn(n, d, generator=gen)
        self.y = torch.randint(0, classes, (n,), generator=gen)
        self.Xv = torch.randn(n, d, generator=gen)
        self.yv = torch.randint(0, classes, (n,), generator=gen)
        self.shape = (classes, d)

    def init(self, hparams):
        return torch.zeros(self.shape, dtype=hparams.dtype, device=hparams.device)

    def inner_loss(self, params, hparams):
        ce = torch.nn.functional.cross_entropy(self.X @ params.T, self.y, reduction="none")
        return torch.mean(torch.sigmoid(hparams) * ce) + 1e-3 * torch.sum(params**2)

    def outer_loss(self, params, hparams):
        return torch.nn.functional.cross_entropy(self.Xv @ params.T, self.yv)

    def initial_hparams(self):
        return torch.zeros(self.X.shape[0])


def floor(problem, hparams, dyn) -> None:
    """T inner steps with no graph: what every method must at least do."""
    with torch.no_grad():
        state, spec = dyn.init_state(problem, hparams)
        for _ in range(dyn.steps):
            state = dyn.step(problem, state, hparams, spec, create_graph=False)


def methods(T: int) -> dict:
    out = {"full": core.Full(), "checkpointed": core.Checkpointed()}
    for K in (1, 5, 25):
        if K < T:
            out[f"truncated K={K}"] = core.Truncated(K)
            out[f"truncated K={K} iterates"] = core.Truncated(K, store="iterates")
    out["implicit cg"] = core.Implicit(solver="cg", iters=20)
    return out


def measure(problem, T: int, repeats: int) -> list[dict]:
    hparams = problem.initial_hparams()
    dyn = core.GradientDescent(steps=T, lr=1.0)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/estimators.json"))
    args = parser.parse_args()
    problem = WeightedSoftmax()
    rows = [row for T in args.T for row in measure(problem, T, args.repeats)]
    print(f"{'T':>5} {'method':<26} {'ms':>9} {'x floor':>8} {'saved KiB':>10} {'stored KiB':>10}")
    for r in rows:
        print(f"{r['T']:>5} {r['method']:<26} {r['time_ms']:>9.2f} {r['vs_floor']:>8.2f} "
              f"{r['saved_bytes'] / 1024:>10.1f} {r['stored_bytes'] / 1024:>10.1f}")  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.machine(), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "problem": "weighted softmax n=1000 d=64 classes=10 float32",
    }  # fmt: skip
    args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
