"""A study's aggregate table computed in this process: the members run as a worker runs them.

Each combination of the study file's grid is built (``worker.build``, the estimator wrapped
in ``core.Metered``) and fitted; the table is ``jobs.studies.table.aggregate`` printed as
``bilevel study status`` prints it (the paper's Table 2 layout), and written as JSON::

    python -m benchmarks.service.study_table examples/studies/hypercleaning-K.json \\
        --json out/study.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

import core
from cli.study import format_table
from jobs.status import JobStatus
from jobs.studies.grid import expand, replicate_paths
from jobs.studies.table import aggregate
from worker.build import build


def run_member(spec) -> dict:
    """One member's summary, as the worker records it (final loss, metrics, cost)."""
    built = build(spec)
    times: list[float] = []
    peaks: list[float] = []

    def record(rec, _state):
        times.append(rec["time_s"])
        peaks.append(rec["peak_bytes"])

    out = core.fit(built.problem, built.hparams, built.dynamics, built.estimator,
                   callback=record, keep_history=False, **built.fit_kwargs)  # fmt: skip
    res = core.hypergradient(built.problem, out.hparams, built.dynamics, built.estimator)
    metrics = {k: float(v) for k, v in built.problem.metrics(res.params, out.hparams).items()}
    return {"final_outer_loss": res.outer_loss, "metrics": metrics,
            "s_per_iteration": sum(times) / len(times), "peak_bytes": max(peaks)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("study", help="a study file: {name, base, grid}")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", help="write the table and the members here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    body = json.loads(Path(args.study).read_text())
    exp = expand(body["base"], body["grid"], max_members=1000, name=body["name"])
    swept = list(body["grid"])
    group_by = [q for q in swept if q not in replicate_paths(swept)]
    members = []
    t0 = time.perf_counter()
    for m in exp.members:
        members.append({"values": m.values, "status": JobStatus.SUCCEEDED,
                        "summary": run_member(m.spec)})  # fmt: skip
    table = aggregate(members, group_by)
    print(f"{body['name']}: {len(members)} members in {time.perf_counter() - t0:.1f} s on "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} thread(s)")  # fmt: skip
    print("\n".join(format_table({"group_by": group_by, "table": table})))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"table": table, "members": members}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
