"""``bilevel audit``: the team's audit trail, newest first (an admin key).

One line per event: time, action, acting team and key, target, client address, and the
changed fields (``field: before -> after``). Another team's key and address are not shown
to you (``-``): see ``api.routes.audit``. Your own events without a key are the store
operator's (``bilevel keys``, ``bilevel teams`` on the store): ``operator``. Like
:mod:`cli.client`, nothing here imports the server, SQLAlchemy or torch.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from cli.client import client_options, connect
from jobs.status import ACTIONS

__all__ = ["add_commands", "cmd_audit"]


def _change(event: dict[str, Any]) -> str:
    before, after = event.get("before") or {}, event.get("after") or {}
    return (
        ", ".join(
            f"{f}: {json.dumps(before.get(f))} -> {json.dumps(after.get(f))}"
            for f in dict.fromkeys([*before, *after])
        )
        or "-"
    )


def cmd_audit(args: argparse.Namespace) -> int:
    """Print up to ``--limit`` events, following the pages' cursors."""
    client = connect(args)
    params: dict[str, Any] = {"limit": min(args.limit, 200)}
    for name in ("action", "since", "until"):
        if getattr(args, name):
            params[name] = getattr(args, name)
    print("\t".join(("time", "action", "team", "key", "target", "address", "change")))
    left = args.limit
    while left > 0:
        page = client.get("/v1/audit", **params)
        for e in page["data"][:left]:
            key = f"{e['key_prefix']} ({e['key_name']})" if e["key_prefix"] else "-"
            if not e["key_prefix"] and e["own"]:
                key = "operator"
            target = f"{e['target_type']} {e['target_id']}"
            print("\t".join((e["created_at"], e["action"], e["team"], key, target,
                             e["address"] or "-", _change(e))))  # fmt: skip
        left -= len(page["data"])
        if not page.get("next_cursor"):
            break
        params["cursor"] = page["next_cursor"]
    return 0


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--limit must be a whole number, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"--limit must be >= 1, got {n}")
    return n


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``audit``."""
    p = commands.add_parser(
        "audit", parents=[client_options()],
        help="the team's audit trail: admin actions and refused cross-team accesses (admin key)",
    )  # fmt: skip
    p.add_argument("--action", choices=ACTIONS, help="only this action")
    p.add_argument("--since", help="only events at or after this time (ISO 8601)")
    p.add_argument("--until", help="only events before this time (ISO 8601)")
    p.add_argument("--limit", type=_positive, default=50, help="the most events to print")
    p.set_defaults(func=cmd_audit)
