"""``bilevel webhooks create | list | deliveries | delete``: terminal-event notifications.

They need an admin key. ``create URL`` prints the webhook's id and, once, its signing secret;
``deliveries ID`` lists each event's delivery (status, attempts, last answer or error). Like
:mod:`cli.client`, nothing here imports the server, SQLAlchemy or torch.
"""

from __future__ import annotations

import argparse
import sys

from cli.client import client_options, connect

__all__ = ["add_commands", "cmd_webhooks"]


def cmd_webhooks(args: argparse.Namespace) -> int:
    """Dispatch ``webhooks <action>``."""
    client = connect(args)
    if args.action == "create":
        hook = client.post("/v1/webhooks", {"url": args.hook_url, "description": args.description})
        print(hook["id"])
        print(f"secret (shown once): {hook['secret']}", file=sys.stderr)
        print(hook["secret"])
        return 0
    if args.action == "list":
        print("\t".join(("id", "url", "created", "description")))
        for h in client.get("/v1/webhooks")["data"]:
            print(f"{h['id']}\t{h['url']}\t{h['created_at']}\t{h['description']}")
        return 0
    if args.action == "delete":
        client.delete(f"/v1/webhooks/{args.id}")
        print(f"deleted {args.id}", file=sys.stderr)
        return 0
    rows = client.get(f"/v1/webhooks/{args.id}/deliveries")["data"]
    print("\t".join(("created", "event", "subject", "status", "attempts", "answer")))
    for d in rows:
        answer = d["last_error"] or (str(d["response_status"]) if d["response_status"] else "-")
        print(f"{d['created_at']}\t{d['event_type']}\t{d['subject_id']}\t{d['status']}\t"
              f"{d['attempts']}\t{answer}")  # fmt: skip
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``webhooks`` and its actions."""
    client = client_options()
    p = commands.add_parser("webhooks", help="signed notifications of ended jobs and studies")
    actions = p.add_subparsers(dest="action", required=True, parser_class=commands._parser_class)
    a = actions.add_parser(
        "create", parents=[client], help="register a URL; prints its id, then its secret (once)"
    )
    # not `url`: that is the server's (--url, client_options), and one would hide the other
    a.add_argument("hook_url", metavar="URL", help="where to POST the events")
    a.add_argument("--description", default="")
    actions.add_parser("list", parents=[client], help="the team's webhooks")
    for name, text in (("deliveries", "each event's delivery to this webhook"),
                       ("delete", "stop sending to this webhook")):  # fmt: skip
        a = actions.add_parser(name, parents=[client], help=text)
        a.add_argument("id")
    p.set_defaults(func=cmd_webhooks)
