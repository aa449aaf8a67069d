"""Does ``torch.compile`` pay here? And where does a K-RMD hypergradient spend its time?

    .venv/bin/python -m benchmarks.library.compiled [--n 5000 --d 785 --T 100 --repeats 5] \\
        [--profile]

The inner step of paper-sized data hypercleaning (closed-form gradient, M = 7850, N = 5000,
T = 100, float32 on the CPU) run eagerly and through ``torch.compile`` (default mode and
``max-autotune-no-cudagraphs``): compile time, the median time of the T steps after it, and
the number of T-step runs after which compiling breaks even, and the largest difference of
the compiled result from the eager one. ``--profile`` prints the
operators that dominate one eager ``Truncated(K=1)`` hypergradient (``torch.profiler``), the
evidence for what the floor is made of.
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
from benchmarks.library.problems import ClosedForm


def _steps(problem: ClosedForm, lam: torch.Tensor, T: int, step) -> torch.Tensor:
    w = torch.zeros(problem.shape)
    for _ in range(T):
        w = step(w, lam)
    return w


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--d", type=int, default=785)
    parser.add_argument("--T", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/compiled.json"))
    args = parser.parse_args(argv)
    problem = ClosedForm(n=args.n, d=args.d)
    lam = torch.zeros(args.n)

    def eager(w, lam):
        return w - problem.inner_grad(w, lam)  # γ = 1, as in the paper

    rows: list[dict[str, Any]] = []
    eager_out = None
    with torch.no_grad():
        for name, mode in (("eager", None), ("compile", "default"),
                           ("compile max-autotune", "max-autotune-no-cudagraphs")):  # fmt: skip
            torch._dynamo.reset()
            step = eager if mode is None else torch.compile(eager, mode=mode)
            t0 = time.perf_counter()
            ref = _steps(problem, lam, args.T, step)  # the first run compiles
            first = time.perf_counter() - t0
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                out = _steps(problem, lam, args.T, step)
                times.append(time.perf_counter() - t0)
            eager_out = ref if eager_out is None else eager_out
            rows.append({"method": name, "first_run_s": first, "median_s": statistics.median(times),
                         "max_abs_diff": float((out - eager_out).abs().max())})  # fmt: skip
    base = rows[0]["median_s"]
    print(f"T={args.T} inner steps, n={args.n} d={args.d}, {torch.get_num_threads()} threads")
    head = f"{'method':<22} {'first run s':>12} {'median s':>10} {'x eager':>8}"
    print(f"{head} {'break-even runs':>16}")
    for r in rows:
        gain = base - r["median_s"]
        extra = r["first_run_s"] - r["median_s"]
        r["break_even_runs"] = extra / gain if gain > 0 else None
        be = f"{r['break_even_runs']:.0f}" if r["break_even_runs"] else "never"
        be = be if r["method"] != "eager" else ""
        print(f"{r['method']:<22} {r['first_run_s']:>12.2f} {r['median_s']:>10.3f} "
              f"{r['median_s'] / base:>8.2f} {be:>16}")  # fmt: skip
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        dyn = core.GradientDescent(steps=args.T, lr=1.0)
        core.hypergradient(problem, lam, dyn, core.Truncated(K=1))
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            core.hypergradient(problem, lam, dyn, core.Truncated(K=1))
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    meta = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": platform.machine(), "threads": torch.get_num_threads(),
            "torch": torch.__version__}  # fmt: skip
    args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
