"""``bilevel problems``: the problem kinds the server accepts, built in or from a plugin
package (a client command: talks to the server, imports neither the server nor torch)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from cli.client import client_options, connect

__all__ = ["add_commands", "cmd_problems", "format_problems"]


def format_problems(body: dict[str, Any]) -> str:
    """``GET /v1/problems`` as a table: kind, source (``builtin`` or package and version)."""
    rows = [("kind", "source", "options")]
    for p in body["data"]:
        source = "builtin" if p["source"] == "builtin" else f"{p['package']} {p['version']}"
        options = ", ".join(k for k in p["json_schema"].get("properties", {}) if k != "kind")
        rows.append((p["kind"], source, options))
    width = [max(len(r[i]) for r in rows) for i in range(2)]
    return "\n".join(f"{k:<{width[0]}}  {s:<{width[1]}}  {o}".rstrip() for k, s, o in rows)


def cmd_problems(args: argparse.Namespace) -> int:
    body = connect(args).get("/v1/problems")
    print(json.dumps(body, indent=2) if args.json else format_problems(body))
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``problems``."""
    p = commands.add_parser(
        "problems", help="the problem kinds a spec may name, built in or from a plugin package",
        parents=[client_options()],
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the server's answer as JSON")
    p.set_defaults(func=cmd_problems)
