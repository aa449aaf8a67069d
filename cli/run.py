"""``bilevel run FILE``: one job in this process, no server.

Here the local machine is the server: the spec is checked against this environment's compute
budget (``BILEVEL_MAX_INNER_STEPS``, ``BILEVEL_MAX_GRAPH_BYTES``, as the API reads them) and
real data sets come from the worker's ``BILEVEL_DATA_DIR``. torch loads inside the command.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.errors import UsageError
from cli.progress import Bar

if TYPE_CHECKING:
    from jobs.specs.job import JobSpec

__all__ = ["add_commands", "cmd_run"]


def read_spec(path: str) -> JobSpec:
    """The spec in ``path``, validated and within the local compute budget."""
    from pydantic import ValidationError

    from api.settings import ApiSettings
    from jobs.specs.admission import admit
    from jobs.specs.job import field_errors

    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    try:
        # no store here: a built-in data set or table only (an uploaded one is refused)
        return admit(text, limits=ApiSettings().budget)
    except ValidationError as exc:
        errs = "; ".join(f"{e['field']}: {e['message']}" for e in field_errors(exc))
        raise UsageError(f"{path}: {errs}") from None


def cmd_run(args: argparse.Namespace) -> int:
    """A job in this process, no server: progress bar, then trace.csv and hparams.npz."""
    from worker.build import build, hparams_npz, to_jsonable
    from worker.methods import fit_job
    from worker.settings import WorkerSettings

    spec = read_spec(args.file)
    built = build(spec, WorkerSettings().data_dir)
    bar = Bar(spec.outer.iterations)

    def progress(record: dict[str, float], _state: Any) -> None:
        bar.show(int(record["iteration"]), f"loss {record['outer_loss']:.4g}")

    out = fit_job(built, spec, callback=progress)
    if built.compiled is not None:  # a background compile does not outlive the fit
        built.compiled.close()
    bar.close()
    res, metrics = built.final(out.hparams)
    summary = {
        "name": spec.name,
        "iterations": out.state.iteration,
        "final_outer_loss": res.outer_loss,
        "best_outer_loss": min(out.history["outer_loss"]),
        "metrics": metrics,
        "hparams": to_jsonable(out.hparams),
    }
    if args.out:
        outdir = Path(args.out)
        outdir.mkdir(parents=True, exist_ok=True)
        with open(outdir / "trace.csv", "w", newline="") as f:
            w = csv.writer(f)
            names = list(out.history)
            w.writerow(names)
            w.writerows(zip(*(out.history[n] for n in names)))
        (outdir / "hparams.npz").write_bytes(hparams_npz(out.hparams))
        (outdir / "result.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``run``."""
    p = commands.add_parser("run", help="run a job in this process, no server")
    p.add_argument("file")
    p.add_argument("--out", help="write trace.csv, hparams.npz and result.json here")
    p.set_defaults(func=cmd_run)
