"""One-shot Omniglot (Table 4, Figure 7) on a CUDA machine, within a wall-clock budget.

    PYTHONUNBUFFERED=1 python3 benchmarks/library/one_shot_gpu.py [options]  # from the repo root

Runs ``bilevel reproduce one-shot`` in the paper's setting (T = 50, meta-batch 4, 1-RMD,
10-RMD, 25-RMD, full RMD and the T = 1 short horizon, 120 meta-test tasks) on ``cuda``. Each
method is first timed; all then run a common number of hyper-iterations: the paper's 5000
if that fits ``--budget-s`` seconds (default 420, for an 8-minute slot), else as many as fit,
with progress lines on stderr. ``--K`` (default ``1 10 25 50``) and ``--no-short-horizon``
trade methods for iterations; any option this script does not know is passed on to
``bilevel reproduce one-shot`` (``--curve-tasks 20 --curve-points 5`` make the evaluations
cheaper). ``--device cpu --smoke`` is a dry run on a machine without CUDA.

Each hypergradient is replayed as one CUDA graph (``core.Graphed``: the run is bound by
kernel launches, not arithmetic). First, :func:`check_graphed` compares graphed and eager
hypergradients on four real meta-batches per method and times both; the run stops there if
they disagree, or with ``--check-only`` (``--skip-check`` skips it, for parallel runs).

The device tool brings back only a few files, so the run writes into a scratch folder and
leaves in ``--out`` (default ``$OUT``, the device tool's folder, else ``out/one-shot-gpu``):
``report.md``, ``results.json`` and ``one_shot.tar.gz`` (everything: report, figures, learned
λ per method).

The data directory is ``--data-dir``, else the first of ``out/data`` (copy
``../shared/data/omniglot`` there and carry ``out/data``: ``../shared`` does not travel) and
``../shared/data`` that holds ``omniglot/images_background.npz``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # run as a script from anywhere, no install needed


def find_data_dir(given: Path | None) -> Path:
    """``given``, else the first of ``out/data`` and ``../shared/data`` that holds Omniglot."""
    candidates = [
        given,
        REPO / "out" / "data",
        REPO.parent / "shared" / "data",
    ]
    for c in candidates:
        if c and (Path(c) / "omniglot" / "images_background.npz").is_file():
            return Path(c)
    tried = ", ".join(str(c) for c in candidates if c)
    raise SystemExit(f"one_shot_gpu: no omniglot/ in any of {tried}; see this file's docstring")


def check_graphed(data_dir: Path, device: str, out: Path, *, smoke: bool = False) -> bool:
    """``core.Graphed`` against the eager estimator on real meta-batches, and both timings.

    Four meta-batches, each at a different ``λ``, per method: a stale buffer or a cached
    feature map left out of the graph would show as a large relative error. The error of a
    second eager run is the float32 noise floor (some cuDNN backward kernels are not
    deterministic). ``smoke`` shrinks the network and the unroll for a dry run. Writes
    ``graphed_check.json``; returns whether every error is small.
    """
    import json
    import statistics
    import time

    import torch

    import core
    from core.data import load_omniglot
    from core.problems.one_shot import OneShot

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def rel(a: Any, b: Any) -> float:  # dicts of tensors
        num = sum(float((a[k] - b[k]).pow(2).sum()) for k in a) ** 0.5
        return num / max(sum(float(b[k].pow(2).sum()) for k in b) ** 0.5, 1e-30)

    def seconds(fn, repeats):
        fn()
        times = []
        for _ in range(repeats):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    data = load_omniglot(data_dir, seed=0)
    width, T = (4, 3) if smoke else (64, 50)
    problem = OneShot(data.split("train"), width=width, device=device)
    dyn = core.GradientDescent(steps=T, lr=0.1, lr_key="log_lr")
    gen = torch.Generator().manual_seed(0)
    hp0 = problem.initial_hparams(seed=0)
    rows, ok = [], True
    for name, est in (("1-RMD", core.Truncated(1)), ("10-RMD", core.Truncated(min(10, T))),
                      ("Full RMD", core.Full())):  # fmt: skip
        graphed = core.Graphed(est)
        errors, noise = [], []
        for i in range(4):
            problem.set_batch(problem.sample(gen))
            noise_gen = torch.Generator().manual_seed(100 + i)
            hp = {
                k: v + 0.01 * torch.randn(v.shape, generator=noise_gen).to(v)
                for k, v in hp0.items()
            }
            want = est(problem, hp, dyn)
            again = est(problem, hp, dyn)
            got = graphed(problem, hp, dyn)
            errors.append(rel(got.grad, want.grad))
            noise.append(rel(again.grad, want.grad))
            assert got.info["graphed"] == device.startswith("cuda")
        eager_s = seconds(lambda est=est, hp=hp: est(problem, hp, dyn), 3)
        graphed_s = seconds(lambda g=graphed, hp=hp: g(problem, hp, dyn), 10)
        row = {
            "method": name,
            "max_rel_error": max(errors),
            "eager_repeat_rel_error": max(noise),
            "eager_s": eager_s,
            "graphed_s": graphed_s,
            "speedup": eager_s / graphed_s,
        }
        ok &= row["max_rel_error"] <= max(1e-3, 10 * row["eager_repeat_rel_error"])
        rows.append(row)
        print(
            f"graphed check {name}: rel error {row['max_rel_error']:.2e} (eager vs eager "
            f"{row['eager_repeat_rel_error']:.2e}), {eager_s * 1e3:.1f} ms eager, "
            f"{graphed_s * 1e3:.1f} ms graphed, x{row['speedup']:.1f}",
            file=sys.stderr,
        )
    (out / "graphed_check.json").write_text(json.dumps({"device": device, "rows": rows}, indent=1))
    return ok


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="One-shot Omniglot on a CUDA machine within a time budget; unknown "
        "options go on to `bilevel reproduce one-shot`."
    )
    p.add_argument("--device", default="cuda", help="cuda, or cpu with --smoke: a dry run")
    p.add_argument("--smoke", action="store_true", help="a tiny network and unroll")
    p.add_argument("--out", type=Path, default=None, help="default: $OUT, else out/one-shot-gpu")
    p.add_argument("--data-dir", type=Path, default=None, help="holds omniglot/")
    p.add_argument("--budget-s", type=float, default=420.0, help="wall-clock budget (s)")
    p.add_argument("--K", nargs="+", type=int, default=[1, 10, 25, 50], help="truncations")
    p.add_argument(
        "--no-short-horizon", dest="short_horizon", action="store_false", help="skip T = 1"
    )
    check = p.add_mutually_exclusive_group()
    check.add_argument("--skip-check", action="store_true", help="no graphed-vs-eager check")
    check.add_argument("--check-only", action="store_true", help="stop after the check")
    return p


def main(argv: list[str] | None = None) -> int:
    import torch

    args, passed_on = _parser().parse_known_args(argv)
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("one_shot_gpu: no CUDA device; this script is for a GPU machine")
    torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
    from experiments import one_shot

    # $OUT is the device tool's folder of files to bring back, not a knob of this script
    out = args.out or Path(os.environ.get("OUT") or REPO / "out" / "one-shot-gpu")
    out.mkdir(parents=True, exist_ok=True)
    data_dir = find_data_dir(args.data_dir)
    if not args.skip_check and not check_graphed(data_dir, device, out, smoke=args.smoke):
        print("one_shot_gpu: core.Graphed disagrees with the eager estimator", file=sys.stderr)
        return 1
    if args.check_only:
        return 0
    work = Path(tempfile.mkdtemp()) / "one-shot"
    argv = [
        "--out", str(work),
        "--data-dir", str(data_dir),
        "--device", device,
        "--K", *map(str, args.K),
        "--iterations", "5000",
        "--budget-s", str(args.budget_s),
        "--eval-tasks", "120",
        "--curve-tasks", "60",
    ]  # fmt: skip
    argv += ["--short-horizon"] if args.short_horizon else []
    argv += ["--smoke"] if args.smoke else []
    argv += passed_on  # later options win: e.g. "--curve-tasks 20" to save time
    parser = argparse.ArgumentParser()
    one_shot.add_arguments(parser)
    name = torch.cuda.get_device_name() if device == "cuda" else device
    print(f"one_shot_gpu: {name}, budget {args.budget_s:g} s", file=sys.stderr)
    rc = one_shot.run(parser.parse_args(argv))
    for name in ("report.md", "results.json"):
        shutil.copy(work / name, out / name)
    with tarfile.open(out / "one_shot.tar.gz", "w:gz") as tar:
        tar.add(work, arcname="one-shot")
    print(f"one_shot_gpu: results in {out}", file=sys.stderr)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
