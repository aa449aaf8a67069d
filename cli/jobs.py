"""``bilevel jobs list [--status S] [--study ID]``: the team's jobs as a table, newest first.

A thin layer over :meth:`client.sync.JobsApi.list`; like :mod:`cli.client`, nothing here
imports the server, SQLAlchemy or torch.
"""

from __future__ import annotations

import argparse

from cli.client import client_options, connect, fmt_value
from client import Job
from jobs.status import JobStatus

__all__ = ["add_commands", "cmd_jobs", "format_jobs"]

HEADER = ("id", "status", "progress", "final loss", "created", "name")


def format_jobs(jobs: list[Job]) -> list[str]:
    """Jobs as aligned lines under a header: id, status, iterations done, final outer loss,
    creation time and name."""
    rows = [HEADER]
    for j in jobs:
        loss = (j.summary or {}).get("final_outer_loss")
        rows.append((str(j.id), j.status, f"{j.progress.iteration}/{j.progress.iterations}",
                     fmt_value(loss), f"{j.created_at:%Y-%m-%d %H:%M:%S}", j.name))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER) - 1)]
    return ["  ".join([*(f"{v:<{w}}" for v, w in zip(r, widths)), r[-1]]) for r in rows]


def cmd_jobs(args: argparse.Namespace) -> int:
    jobs = connect(args).jobs.list(args.status, study=args.study, limit=args.limit)
    print("\n".join(format_jobs(jobs)))
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``jobs`` and its ``list`` action."""
    p = commands.add_parser("jobs", help="list the team's jobs")
    actions = p.add_subparsers(dest="action", required=True, parser_class=commands._parser_class)
    a = actions.add_parser("list", parents=[client_options()], help="the team's jobs, newest first")
    a.add_argument("--status", choices=[str(s) for s in JobStatus], help="only jobs in this status")
    a.add_argument("--study", help="only the members of this study")
    a.add_argument("--limit", type=int, default=50, help="the most jobs to list (1-200)")
    a.set_defaults(func=cmd_jobs)
