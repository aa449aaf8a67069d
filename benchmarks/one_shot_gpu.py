"""One-shot Omniglot (Table 4, Figure 7) on a CUDA machine, within a wall-clock budget.

    PYTHONUNBUFFERED=1 python3 benchmarks/one_shot_gpu.py        # from the repository root

Runs ``bilevel reproduce one-shot`` in the paper's setting (T = 50, meta-batch 4, 1-RMD,
10-RMD, 25-RMD, full RMD and the T = 1 short horizon, 120 meta-test tasks) on ``cuda``. Each
method is first timed; all then run a common number of hyper-iterations: the paper's 5000
if that fits ``ONE_SHOT_BUDGET_S`` seconds (default 420, for an 8-minute slot), else as many
as fit, with progress lines on stderr. ``ONE_SHOT_K`` (default ``"1 10 25 50"``) and
``ONE_SHOT_SHORT=0`` (no short horizon) trade methods for iterations; ``ONE_SHOT_ARGS`` adds
options (``--curve-tasks 20 --curve-points 5`` make the evaluations cheaper).

The device tool brings back only a few files, so the run writes into a scratch folder and
leaves in ``$OUT``: ``report.md``, ``results.json`` and ``one_shot.tar.gz`` (everything:
report, figures, learned λ per method).

The data directory is the first of ``$BILEVEL_DATA_DIR``, ``out/data`` (copy
``../shared/data/omniglot`` there and carry ``out/data``: ``../shared`` does not travel)
and ``../shared/data`` that holds ``omniglot/images_background.npz``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere, no install needed


def _data_dir() -> Path:
    candidates = [
        os.environ.get("BILEVEL_DATA_DIR"),
        REPO / "out" / "data",
        REPO.parent / "shared" / "data",
    ]
    for c in candidates:
        if c and (Path(c) / "omniglot" / "images_background.npz").is_file():
            return Path(c)
    tried = ", ".join(str(c) for c in candidates if c)
    raise SystemExit(f"one_shot_gpu: no omniglot/ in any of {tried}; see this file's docstring")


def main() -> int:
    import argparse

    import torch

    device = os.environ.get("ONE_SHOT_DEVICE", "cuda")  # "cpu" with ONE_SHOT_SMOKE=1: a dry run
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("one_shot_gpu: no CUDA device; this script is for a GPU machine")
    torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
    from experiments import one_shot

    out = Path(os.environ.get("OUT") or REPO / "out" / "one-shot-gpu")
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp()) / "one-shot"
    budget = os.environ.get("ONE_SHOT_BUDGET_S", "420")
    argv = [
        "--out", str(work),
        "--data-dir", str(_data_dir()),
        "--device", device,
        "--K", *os.environ.get("ONE_SHOT_K", "1 10 25 50").split(),
        "--iterations", "5000",
        "--budget-s", budget,
        "--eval-tasks", "120",
        "--curve-tasks", "60",
    ]  # fmt: skip
    argv += ["--short-horizon"] if os.environ.get("ONE_SHOT_SHORT", "1") == "1" else []
    argv += ["--smoke"] if os.environ.get("ONE_SHOT_SMOKE") else []
    argv += os.environ.get("ONE_SHOT_ARGS", "").split()  # e.g. "--curve-tasks 20" to save time
    parser = argparse.ArgumentParser()
    one_shot.add_arguments(parser)
    name = torch.cuda.get_device_name() if device == "cuda" else device
    print(f"one_shot_gpu: {name}, budget {budget} s", file=sys.stderr)
    rc = one_shot.run(parser.parse_args(argv))
    for name in ("report.md", "results.json"):
        shutil.copy(work / name, out / name)
    with tarfile.open(out / "one_shot.tar.gz", "w:gz") as tar:
        tar.add(work, arcname="one-shot")
    print(f"one_shot_gpu: results in {out}", file=sys.stderr)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
