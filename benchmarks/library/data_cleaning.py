"""Time to a good answer on the field's data-cleaning benchmark, every method, one thread.

    .venv/bin/python -m benchmarks.library.data_cleaning --data-dir ../shared/data/mnist \\
        [--seeds 0 1 2] [--budget-s 10] [--methods soba saba ...] [--json PATH] [--figure PATH]
    .venv/bin/python -m benchmarks.library.data_cleaning --quadratic [--budget-s 5]

The problems, the method settings and the measuring loop are in
:mod:`experiments._fast_setups` (shared with ``bilevel reproduce fast-methods``): the MNIST
data-cleaning problem of issue 24 (time to test accuracy 0.856, best and late accuracy) and,
with ``--quadratic``, the quadratic pair with a known solution (time to ``||λ-λ*|| < 1e-4``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from experiments._fast_setups import figure, measure, table_lines


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--data-dir", default="../shared/data/mnist")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--budget-s", type=float, default=10.0)
    ap.add_argument("--every-s", type=float, default=0.05, help="evaluation period (s)")
    ap.add_argument("--methods", nargs="+", default=None)
    ap.add_argument("--quadratic", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--figure", type=Path, default=None)
    args = ap.parse_args(argv)
    out = measure(
        quadratic=args.quadratic,
        data_dir=args.data_dir,
        seeds=args.seeds,
        budget_s=args.budget_s,
        every_s=args.every_s,
        methods=args.methods,
    )
    print("\n".join(table_lines(out["rows"], args.quadratic)))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    if args.figure:
        figure(out["curves"], args.figure, args.quadratic)
    return out


if __name__ == "__main__":
    main()
