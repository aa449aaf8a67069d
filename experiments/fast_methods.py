"""Fast methods on data cleaning (issue 24): test accuracy against seconds, every method.

``bilevel reproduce fast-methods --out DIR`` runs SOBA, SABA, F2SA, warm-started minibatch
K-RMD, warm-started full RMD and the paper's cold-start K-RMD protocol on the MNIST
data-cleaning problem (:mod:`experiments._fast_setups`), on one thread, for each seed, and
the same on the quadratic pair with a known solution; it writes ``fig_data_cleaning.png``
(test accuracy against seconds), ``fig_quadratic_pair.png`` (distance to the solution
against seconds), ``report.md`` (time to test accuracy 0.856, best and late accuracy) and
``results.json`` with every curve.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from experiments import data_dir_setting
from experiments._fast_setups import figure, measure, table_lines
from experiments._report import default_data_dir


def add_arguments(parser: argparse.ArgumentParser, data_dir: str | None = None) -> None:
    """Options of ``bilevel reproduce fast-methods``."""
    parser.add_argument("--out", type=Path, required=True, help="directory for figures and report")
    parser.add_argument(
        "--data-dir",
        default=default_data_dir(data_dir if data_dir is not None else data_dir_setting()),
        help="the MNIST folder (or its parent)",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budget-s", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--quadratic-budget-s", type=float, default=5.0)
    parser.add_argument("--methods", nargs="+", default=None, help="data-cleaning methods")
    parser.add_argument("--skip-quadratic", action="store_true")


def run(args: argparse.Namespace) -> int:
    """Measure, then write the figures, ``report.md`` and ``results.json``."""
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    results = {
        "data_cleaning": measure(
            quadratic=False,
            data_dir=str(args.data_dir),
            seeds=args.seeds,
            budget_s=args.budget_s,
            every_s=0.05,
            methods=args.methods,
        )
    }
    if not args.skip_quadratic:
        results["quadratic_pair"] = measure(
            quadratic=True,
            data_dir="",
            seeds=args.seeds,
            budget_s=args.quadratic_budget_s,
            every_s=0.02,
        )
    lines = ["# Fast methods (issue 24)", ""]
    for name, res in results.items():
        figure(res["curves"], out / f"fig_{name}.png", name == "quadratic_pair")
        lines += [
            f"## {name.replace('_', ' ')}",
            "",
            f"{res['date']}, {res['machine']}, {res['threads']} thread, torch {res['torch']}, "
            f"seeds {res['seeds']}, {res['budget_s']} s per run.",
            "",
            "```",
            *table_lines(res["rows"], name == "quadratic_pair"),
            "```",
            "",
            f"![{name}](fig_{name}.png)",
            "",
        ]
    (out / "report.md").write_text("\n".join(lines))
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print("\n".join(lines))
    return 0
