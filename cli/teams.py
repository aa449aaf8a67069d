"""``bilevel teams set | list``: teams' fair-share weights and running limits, on the store.

Like ``bilevel keys``, an operator's command that works on the store itself (no server);
``PATCH /v1/teams/{name}`` does the same with an admin key. Both are audited by the store
(``team.update``, the team's own event, without a key).
"""

from __future__ import annotations

import argparse
from typing import Any

from cli.errors import UsageError
from cli.options import group_options
from cli.store import open_store
from jobs.status import QueueKind

__all__ = ["add_commands", "cmd_teams"]


def _weight(text: str) -> float | None:
    if text == "default":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number or 'default', got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _limit(text: str) -> int | None:
    if text == "default":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer or 'default', got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def cmd_teams(args: argparse.Namespace) -> int:
    from jobs.store import repo

    settings, sessions = open_store(args)
    policy = repo.Policy.of(settings)
    if args.action == "set":
        changes: dict[str, Any] = {
            k: getattr(args, k)
            for k in ("weight", "max_running_cpu", "max_running_gpu")
            if getattr(args, k, argparse.SUPPRESS) is not argparse.SUPPRESS
        }
        if not changes:
            raise UsageError(
                "nothing to set: give --weight, --max-running-cpu or --max-running-gpu"
            )
        with sessions.begin() as s:
            found = repo.team_by_name(s, args.name)
            if found is None:
                raise UsageError(f"no team {args.name!r}")
            actor = repo.Actor.operator(found.id)
            team = repo.set_team_policy(s, args.name, actor=actor, **changes)
            teams = [found if team is None else team]
    else:
        with sessions() as s:
            teams = repo.list_teams(s)
    print("team\tweight\tmax_running_cpu\tmax_running_gpu")
    for t in teams:
        mark = {f: "" if getattr(t, f) is not None else " (default)"
                for f in ("weight", "max_running_cpu", "max_running_gpu")}  # fmt: skip
        print(f"{t.name}\t{policy.weight(t):g}{mark['weight']}\t"
              f"{policy.limit(t, QueueKind.CPU)}{mark['max_running_cpu']}\t"
              f"{policy.limit(t, QueueKind.GPU)}{mark['max_running_gpu']}")  # fmt: skip
    return 0


def _store_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state-dir", help="embedded mode's data directory")


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``teams`` and its actions ``set`` and ``list``."""
    group, action = group_options(_store_options)
    p = commands.add_parser(
        "teams", parents=[group], help="set or list teams' fair-share weights and limits"
    )
    actions = p.add_subparsers(dest="action", required=True, parser_class=commands._parser_class)
    a = actions.add_parser(
        "set", parents=[action], help="set a team's weight and running limits ('default' resets)"
    )
    a.add_argument("name")
    a.add_argument("--weight", type=_weight, default=argparse.SUPPRESS,
                   help="its share of the pool relative to other teams' (default 1)")  # fmt: skip
    a.add_argument("--max-running-cpu", type=_limit, default=argparse.SUPPRESS,
                   help="the most of its jobs running at once on CPU workers")  # fmt: skip
    a.add_argument("--max-running-gpu", type=_limit, default=argparse.SUPPRESS,
                   help="the most of its jobs running at once on GPU workers")  # fmt: skip
    actions.add_parser("list", parents=[action], help="list every team's settings")
    p.set_defaults(func=cmd_teams)
