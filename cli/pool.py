"""``bilevel pool``: who uses the shared pool, and where your queued jobs stand (a client
command: talks to the server, imports neither the server nor torch)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from cli.client import client_options, connect
from jobs.status import JobStatus

__all__ = ["add_commands", "cmd_pool", "format_pool"]


def _secs(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.0f}s" if v < 120 else f"{v / 60:.0f}m"


def format_pool(pool: dict[str, Any]) -> str:
    """``GET /v1/pool`` as tables: teams by kind, workers, your queued jobs."""
    lines = [f"{'team':<20} {'kind':<4} {'weight':>6} {JobStatus.RUNNING:>7} {JobStatus.QUEUED:>6} "
             f"{'limit':>5} {'share':>6} {'fair':>6}"]  # fmt: skip
    for t in pool["teams"]:
        for kind, k in sorted(t["kinds"].items()):
            lines.append(f"{t['name']:<20} {kind:<4} {t['weight']:>6g} {k['running']:>7} "
                         f"{k['queued']:>6} {k['limit']:>5} {k['share']:>6.2f} "
                         f"{k['fair_share']:>6.2f}")  # fmt: skip
    for kind, k in sorted(pool.get("totals", {}).items()):  # every team's, for any key
        lines.append(f"{'(all ' + str(k['teams']) + ' teams)':<20} {kind:<4} {'':>6} "
                     f"{k['running']:>7} {k['queued']:>6}")  # fmt: skip
    waits = ", ".join(f"{k} {_secs(v)}" for k, v in sorted(pool["oldest_wait_s"].items()))
    busy = sum(w["busy"] for w in pool["workers"])
    lines.append(f"\n{len(pool['workers'])} live workers, {busy} busy; oldest wait: {waits}; "
                 f"preemption {'on' if pool['preemption'] else 'off'}")  # fmt: skip
    if pool["queued"]:
        lines.append(f"\n{'your queued job':<36} {'kind':<4} {'priority':<8} {'position':>8} "
                     f"{'starts in':>9}")  # fmt: skip
        for q in pool["queued"]:
            lines.append(f"{q['id']:<36} {q['queue']:<4} {q['priority']:<8} {q['position']:>8} "
                         f"{_secs(q['estimated_start_s']):>9}")  # fmt: skip
    return "\n".join(lines)


def cmd_pool(args: argparse.Namespace) -> int:
    pool = connect(args).get("/v1/pool")
    print(json.dumps(pool, indent=2) if args.json else format_pool(pool))
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``pool``."""
    p = commands.add_parser(
        "pool", help="the shared pool: teams' shares, workers, your jobs' places in the queue",
        parents=[client_options()],
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the server's answer as JSON")
    p.set_defaults(func=cmd_pool)
