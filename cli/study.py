"""``bilevel study submit | list | status | watch | cancel``: a grid of jobs as one object.

``study submit FILE`` sends a study (``{"name", "base", "grid" or "search", "group_by"}``)
to ``POST /v1/studies``; ``study status ID`` prints a search's best member or Pareto front,
then the aggregate table (the layout of the
paper's Table 2: mean ± std over seeds per swept setting, seconds per hyper-iteration, peak
memory); ``study watch ID`` draws a progress bar over the members until every one has ended.
Like :mod:`cli.client`, nothing here imports the server, SQLAlchemy or torch.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from cli.client import (
    add_idempotency_option,
    client_options,
    connect,
    invalid,
    is_study,
    read_spec,
)
from cli.errors import UsageError
from client import ApiError, Client, Study
from client.progress import Bar
from jobs.status import JobStatus

__all__ = ["add_commands", "format_best", "format_table"]

# the cost columns come last, each in its own unit
_COST = {"s_per_iteration": ("s/iter", 1.0), "peak_bytes": ("peak MiB", 1 / (1 << 20))}


def _cell(stat: Mapping[str, Any] | None, scale: float = 1.0) -> str:
    if not stat or stat.get("mean") is None:
        return "-"
    mean = stat["mean"] * scale
    std = stat.get("std")
    return f"{mean:.4g}" if std is None else f"{mean:.4g} ± {std * scale:.2g}"


def format_table(study: Mapping[str, Any]) -> list[str]:
    """The aggregate table as aligned text lines: one row per setting of ``group_by``."""
    rows: Sequence[Mapping[str, Any]] = study.get("table") or []
    group_by: list[str] = list(study.get("group_by") or [])
    metrics = sorted({k for r in rows for k in r["stats"] if k not in _COST})
    if "final_outer_loss" in metrics:  # the outer objective first, as in Table 2
        metrics.insert(0, metrics.pop(metrics.index("final_outer_loss")))
    head = [*(p.split(".")[-1] for p in group_by), "done", *metrics,
            *(label for label, _ in _COST.values())]  # fmt: skip
    body = []
    for r in rows:
        vals = [json.dumps(r["values"].get(p)) if not isinstance(r["values"].get(p), str)
                else r["values"][p] for p in group_by]  # fmt: skip
        body.append([
            *vals,
            f"{r['succeeded']}/{r['members']}",
            *(_cell(r["stats"].get(m)) for m in metrics),
            *(_cell(r["stats"].get(k), scale) for k, (_, scale) in _COST.items()),
        ])  # fmt: skip
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    return ["  ".join(f"{x:>{w}}" for x, w in zip(line, widths)) for line in [head, *body]]


def format_best(study: Mapping[str, Any]) -> list[str]:
    """A search's best member (one objective) or its Pareto front (several), one per line."""
    search = study.get("search")
    if not search:
        return []
    names = [o["metric"] for o in search["objectives"]]
    members = {m["position"]: m for m in study.get("members") or []}
    title = "best" if len(names) == 1 else "pareto front"
    pruned = sum(1 for m in members.values() if m["status"] == JobStatus.PRUNED)
    out = [f"{title} ({len(members)} trials, {pruned} pruned):"]
    for pos in study.get("best") or []:
        m = members.get(pos)
        if m is None:
            continue
        objs = ", ".join(f"{n}={v:.4g}" for n, v in zip(names, m.get("objectives") or []))
        params = ", ".join(f"{k}={json.dumps(v)}" for k, v in m["values"].items())
        out.append(f"  #{pos} {objs}  [{params}]  {m['job_id']}")
    if len(out) == 1:
        out.append("  (no member has finished yet)")
    return out


def format_importance(study: Mapping[str, Any]) -> list[str]:
    """A search's parameter importance, one path a line, largest first, with a bar."""
    imp = study.get("importance")
    if not imp:
        return []
    out = [f"parameter importance ({imp['evaluator']}, {imp['objective']}, "
           f"{imp['trials']} complete trials):"]  # fmt: skip
    width = max((len(k) for k in imp["params"]), default=0)
    for path, share in imp["params"].items():
        out.append(f"  {path:<{width}}  {share:6.1%}  {'#' * round(20 * share)}")
    return out


def format_warm(study: Mapping[str, Any]) -> list[str]:
    """How many earlier members warm-started a search, and how many were skipped why."""
    warm = study.get("warm_start")
    if not warm:
        return []
    skipped = ", ".join(f"{n} {why.replace('_', ' ')}" for why, n in warm["skipped"].items() if n)
    return [f"warm start: {warm['trials']} earlier member(s)"
            + (f" (skipped: {skipped})" if skipped else "")]  # fmt: skip


def _summary_line(study: Study) -> str:
    p = study.progress
    counts = ", ".join(f"{n} {s}" for s, n in p.by_status.items() if n)
    return f"{study.name}: {study.status}, {p.finished}/{p.members} ended ({counts})"


def failures(study: Study) -> list[str]:
    """Why members did not succeed: one line per failed or cancelled member."""
    lines = []
    for m in study.members or []:
        if m.status in (JobStatus.FAILED, JobStatus.CANCELLED):
            why = f"{m.error.type}: {m.error.detail}" if m.error else str(m.status)
            lines.append(f"  {m.name} {json.dumps(m.values)}: {why}")
    return [f"{len(lines)} member(s) did not succeed:", *lines] if lines else []


def _submit(c: Client, args: argparse.Namespace) -> int:
    value = read_spec(args.file)
    if isinstance(value, dict) and not is_study(value) and "problem" in value:
        raise UsageError(
            f"{args.file} is a job spec, not a study (no base and grid): submit it with "
            f"`bilevel submit {args.file}`"
        )
    try:
        study = c.studies.submit(value, idempotency_key=args.idempotency_key)
    except ApiError as exc:
        raise invalid(c, exc, args.file, value, "/v1/studies") from None
    for s in study.skipped:
        print(f"skipped {json.dumps(s['values'])}: {s['reason']}", file=sys.stderr)
    print(study.id)
    return 0


def _around(c: Client, args: argparse.Namespace) -> int:
    options: dict[str, Any] = {"n_trials": args.trials, "max_concurrent": args.concurrent,
                               "sampler": args.sampler, "seed": args.seed}  # fmt: skip
    if args.name:
        options["name"] = args.name
    if args.pruner:
        options["pruner"] = {"kind": args.pruner}
    path = f"/v1/jobs/{args.job_id}/search-around"
    try:
        study = c.studies.around(args.job_id, idempotency_key=args.idempotency_key, **options)
    except ApiError as exc:
        raise invalid(c, exc, f"job {args.job_id}", options, path) from None
    print(study.id)
    return 0


def _show(study: Study, as_json: bool) -> None:
    if as_json:
        print(study.model_dump_json(indent=2))
        return
    print(_summary_line(study))
    data = study.model_dump(mode="json")
    lines = [*format_warm(data), *format_best(data), *format_importance(data),
             *format_table(data)]  # fmt: skip
    print("\n".join(lines))
    for line in failures(study):
        print(line)


def cmd_study(args: argparse.Namespace) -> int:
    """Dispatch ``study <action>``."""
    c = connect(args)
    if args.action == "submit":
        return _submit(c, args)
    if args.action == "around":
        return _around(c, args)
    if args.action == "list":
        print("\t".join(("id", "status", "ended", "name")))
        for s in c.studies.list():
            print(f"{s.id}\t{s.status}\t{s.progress.finished}/{s.progress.members}\t{s.name}")
        return 0
    if args.action == "cancel":
        print(_summary_line(c.studies.cancel(args.id)))
        return 0
    if args.action == "status":
        _show(c.studies.get(args.id), args.json)
        return 0
    first = c.studies.get(args.id)
    bar = Bar(((first.search or {}).get("n_trials")) or first.progress.members)

    def show(study: Study) -> None:
        running = study.progress.by_status.get(JobStatus.RUNNING, 0)
        bar.show(study.progress.finished, f"{study.status} ({running} running)")

    study = c.studies.wait(args.id, progress=False, interval=args.interval, on_poll=show)
    bar.close()
    _show(study, args.json)
    return 0 if study.status == JobStatus.SUCCEEDED else 1


def _id_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the study as JSON")


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``study`` and its actions."""
    client = client_options()
    p = commands.add_parser("study", help="sweep a job spec over a grid, as one object")
    actions = p.add_subparsers(dest="action", required=True, parser_class=commands._parser_class)
    a = actions.add_parser(
        "submit", parents=[client], help="submit a study (JSON: name, base, grid); prints its id"
    )
    a.add_argument("file")
    add_idempotency_option(a, "study")
    a = actions.add_parser(
        "around", parents=[client],
        help="a search study around a job: its outer lr (log, /3..x3), K and inner steps, "
        "warm-started by the job; prints its id",
    )  # fmt: skip
    a.add_argument("job_id")
    a.add_argument("--trials", type=int, default=20, help="n_trials (default 20)")
    a.add_argument("--concurrent", type=int, default=2, help="members at once (default 2)")
    a.add_argument("--sampler", default="tpe", choices=("tpe", "cmaes", "gp", "random", "qmc"))
    a.add_argument("--pruner", choices=("median", "successive_halving", "hyperband"))
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--name", help="the study's name (default: around <job name>)")
    add_idempotency_option(a, "study")
    actions.add_parser("list", parents=[client], help="the team's studies, newest first")
    for name, text in (
        ("status", "the study's progress and aggregate table"),
        ("watch", "a progress bar over the members until all have ended, then the table"),
        ("cancel", "cancel every member still queued or running"),
    ):
        a = actions.add_parser(name, parents=[client], help=text)
        a.add_argument("id")
        _id_options(a)
        if name == "watch":
            a.add_argument("--interval", type=float, default=1.0)
    p.set_defaults(func=cmd_study, json=False)
