"""GPU check: every estimator on the device against a CPU float64 reference, then timings.

    .venv/bin/python -m benchmarks.library.gpu_check [--device cuda|cpu] [--out DIR] [--repeats 5]

1. Correctness: each registered estimator in float32 on ``--device`` against the same
   estimator in float64 on the CPU, on a quadratic (with ``B_0`` and a direct term), the toy
   problem and a weighted softmax regression; prints the relative error of the hypergradient.
2. Timings on the paper-sized hypercleaning shape (M = 7850 inner parameters, N = 5000
   hyperparameters, T = 100, random data): median of ``--repeats`` after a warm-up, with CUDA
   events on a GPU, as a multiple of the floor (T inner steps with no graph), and the peak
   ``torch.cuda.max_memory_allocated`` per estimator (bytes saved for backward on the CPU).

Writes ``gpu_check.json`` under ``--out`` (default ``$OUT`` if set, else benchmarks/results).
It runs on the CPU too (``--device cpu``), which is how the test suite smokes it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

import core
from benchmarks.library.problems import WeightedSoftmax, floor
from core.problems import Quadratic, Toy

OPTIONS: dict[str, dict[str, Any]] = {
    "full": {},
    "truncated": {"K": 5},
    "forward": {"chunk": 64},
    "checkpointed": {},
    "implicit": {"iters": 50, "tol": 1e-6},
}


def _moved(problem, device, dtype):
    """A copy of a problem's tensors on ``device`` in ``dtype`` (attributes only)."""
    clone = object.__new__(type(problem))
    for k, v in vars(problem).items():
        is_float = isinstance(v, torch.Tensor) and v.is_floating_point()
        setattr(clone, k, v.to(device=device, dtype=dtype) if is_float else v)
        if isinstance(v, torch.Tensor) and not v.is_floating_point():
            setattr(clone, k, v.to(device))
    return clone


def correctness(device: str, small: bool) -> list[dict]:
    """Relative error of each estimator on ``device`` (float32) vs the CPU in float64."""
    n, T = (100, 10) if small else (1000, 50)
    cases = {
        "quadratic": (
            Quadratic(dim=32, n_hparams=6, rho=0.1, init_depends_on_hparams=True, seed=0),
            torch.linspace(-1, 1, 6, dtype=torch.float64),
            core.GradientDescent(steps=T, lr=0.5, momentum=0.5),
        ),
        "toy": (Toy(), torch.tensor([1.0, 1.0]), core.GradientDescent(steps=2 * T, lr=0.1)),
        "weighted softmax": (
            WeightedSoftmax(n=n, d=32),
            torch.zeros(n),
            core.GradientDescent(steps=T, lr=1.0),
        ),
    }
    rows = []
    for case, (problem, lam, dyn) in cases.items():
        for name, opts in OPTIONS.items():
            if name == "forward" and lam.numel() > 64:
                continue  # N directions: forward mode is the wrong tool for large N
            est = core.make_estimator(name, **opts)
            ref = core.hypergradient(
                _moved(problem, "cpu", torch.float64), lam.double(), dyn, est
            ).grad
            got = core.hypergradient(
                _moved(problem, device, torch.float32), lam.float().to(device), dyn, est
            ).grad
            assert isinstance(got, torch.Tensor) and isinstance(ref, torch.Tensor)
            err = float((got.double().cpu() - ref).norm() / ref.norm())
            rows.append({"problem": case, "method": name, "rel_error": err})
    return rows


def _timer(device: str):
    if device.startswith("cuda"):

        def run(fn):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) / 1e3

    else:

        def run(fn):
            t0 = time.perf_counter()
            fn()
            return time.perf_counter() - t0

    return run


def timings(device: str, repeats: int, small: bool) -> list[dict]:
    """Time and memory per estimator on the hypercleaning shape."""
    n, d, T = (200, 32, 30) if small else (5000, 785, 100)
    problem = _moved(WeightedSoftmax(n=n, d=d), device, torch.float32)
    lam = torch.zeros(n, device=device)
    dyn = core.GradientDescent(steps=T, lr=1.0)
    ests: dict[str, core.Estimator] = {
        "full": core.Full(),
        "checkpointed": core.Checkpointed(),
        **{f"truncated K={K}": core.Truncated(K) for K in (1, 5, 25)},
        "truncated K=5 iterates": core.Truncated(5, store="iterates"),
        "implicit cg": core.Implicit(iters=20),
    }
    fns: dict[str, Callable[[], object]] = {"floor": lambda: floor(problem, lam, dyn)}
    for name, est in ests.items():
        fns[name] = partial(core.hypergradient, problem, lam, dyn, est)
    timer = _timer(device)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats + 1):  # round 0 warms up (allocator, kernels) and is dropped
        for name, fn in fns.items():
            times[name].append(timer(fn))
    base = statistics.median(times["floor"][1:])
    rows = []
    for name, fn in fns.items():
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            fn()
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() - before
        else:
            with core.SavedTensorMeter() as meter:
                fn()
            peak = meter.peak
        med = statistics.median(times[name][1:])
        rows.append(
            {"method": name, "time_ms": 1e3 * med, "vs_floor": med / base, "peak_bytes": peak}
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--out", type=Path, default=Path(os.environ.get("OUT", "benchmarks/results"))
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--small", action="store_true", help="tiny sizes, for a smoke test")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available here")
    name = (
        torch.cuda.get_device_name(args.device)
        if args.device.startswith("cuda")
        else platform.processor()
    )
    print(f"device: {args.device} ({name}), torch {torch.__version__}")

    check = correctness(args.device, args.small)
    print(f"\n{'problem':<18} {'method':<14} {'rel. error vs CPU float64':>26}")
    for r in check:
        print(f"{r['problem']:<18} {r['method']:<14} {r['rel_error']:>26.2e}")

    bench = timings(args.device, args.repeats, args.small)
    print(f"\n{'method':<24} {'ms':>9} {'x floor':>8} {'peak MiB':>9}")
    for r in bench:
        mib = r["peak_bytes"] / 2**20
        print(f"{r['method']:<24} {r['time_ms']:>9.2f} {r['vs_floor']:>8.2f} {mib:>9.1f}")

    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"device": args.device, "name": name, "torch": torch.__version__, "small": args.small}
    (args.out / "gpu_check.json").write_text(
        json.dumps({"meta": meta, "correctness": check, "timings": bench}, indent=1)
    )
    print(f"wrote {args.out / 'gpu_check.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
