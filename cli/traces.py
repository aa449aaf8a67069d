"""``bilevel traces compact``: compact the traces past the retention now (server side).

Straight on the store like ``backup`` and ``migrate``. The workers run the same pass every
``BILEVEL_TRACE_COMPACT_EVERY_S``; this one runs to the end (or ``--max-s``), for a first
compaction after setting the retention or before measuring the store's size.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta

from cli.errors import UsageError
from cli.store import settings_for

__all__ = ["add_commands", "cmd_compact"]


def cmd_compact(args: argparse.Namespace) -> int:
    from jobs.settings import StoreSettings
    from jobs.store import repo
    from jobs.store.db import make_engine, make_session_factory

    settings = settings_for(StoreSettings, args)
    days = args.older_than_days if args.older_than_days is not None else (
        settings.trace_retention_days)  # fmt: skip
    if days is None:
        raise UsageError("traces compact needs --older-than-days or BILEVEL_TRACE_RETENTION_DAYS")
    if days < 0:
        raise UsageError(f"--older-than-days must be >= 0, got {days}")
    if args.batch < 1:
        raise UsageError(f"--batch must be >= 1, got {args.batch}")
    engine = make_engine(settings.store_url)
    try:
        done = repo.compact_due(make_session_factory(engine), timedelta(days=days),
                                batch=args.batch, max_s=args.max_s)  # fmt: skip
    finally:
        engine.dispose()
    print(json.dumps(done.as_dict()))
    print(f"compacted the traces of {done.jobs} job(s) finished over {days} day(s) ago: "
          f"{done.points} points in {done.seconds:.1f} s", file=sys.stderr)  # fmt: skip
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``traces compact``."""
    p = commands.add_parser("traces", help="the trace store (server side)")
    sub = p.add_subparsers(dest="traces_command", required=True)
    c = sub.add_parser(
        "compact",
        help="compact the full-resolution points of jobs finished before the retention "
        "into their per-64-iteration rollups",
    )
    c.add_argument("--older-than-days", type=float, default=None,
                   help="retention (default BILEVEL_TRACE_RETENTION_DAYS)")  # fmt: skip
    c.add_argument("--batch", type=int, default=20, help="jobs per transaction")
    c.add_argument("--max-s", type=float, default=None, help="stop after this long")
    c.add_argument("--state-dir", help="embedded mode's data directory")
    c.set_defaults(func=cmd_compact)
