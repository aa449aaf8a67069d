"""``bilevel keys create | list | revoke``: API keys, straight on the store (no server).

Creating and revoking are audited by the store (``key.create``, ``key.revoke``) as the
key's team's own events, without a key, as ``/v1/keys`` is with the admin key's.

``--operator`` makes the pool operator's key (every team's weights and limits, every team in
``/v1/pool``, ``/metrics``): only here, on the server, since the API never makes one.
"""

from __future__ import annotations

import argparse
import sys

from cli.errors import UsageError
from cli.options import group_options
from cli.store import key_secret, open_store, secret_names

__all__ = ["add_commands", "cmd_keys"]


def cmd_keys(args: argparse.Namespace) -> int:
    from jobs.status import KeyScope
    from jobs.store import repo

    settings, sessions = open_store(args)
    if args.action == "create":
        secret = key_secret(settings)
        scope = (KeyScope.OPERATOR if args.operator
                 else KeyScope.ADMIN if args.admin else KeyScope.TEAM)  # fmt: skip
        with sessions.begin() as s:
            team = repo.ensure_team(s, args.team)
            _, key = repo.create_api_key(s, team, name=args.name or "", secret=secret, scope=scope,
                                         actor=repo.Actor.operator(team.id))  # fmt: skip
        print(key)
        return 0
    if args.action == "list":
        with sessions() as s:
            rows = repo.list_api_keys(s, args.team)
        names = secret_names(settings)
        print("\t".join(("prefix", "team", "name", "created", "state", "scope", "secret")))
        for k, team_name in rows:
            state = "revoked" if k.revoked_at else "active"
            if k.hash_scheme != "hmac-sha256":
                hashed = "sha256"  # pre-0003: rehashed on next use
            else:
                hashed = names.get(k.secret_id, k.secret_id or "unknown")
            print(f"{k.prefix}\t{team_name}\t{k.name}\t{k.created_at:%Y-%m-%d %H:%M}\t{state}"
                  f"\t{k.scope}\t{hashed}")  # fmt: skip
        return 0
    try:
        with sessions.begin() as s:
            row = repo.get_api_key(s, args.prefix)
            actor = repo.Actor.operator(row.team_id) if row is not None else None
            ok = actor is not None and repo.revoke_api_key(s, args.prefix, actor=actor)
    except repo.LastAdminKey as exc:
        raise UsageError(f"cannot revoke: {exc}") from None
    if not ok:
        raise UsageError(f"no active key with prefix {args.prefix!r}")
    print(f"revoked {args.prefix}", file=sys.stderr)
    return 0


def _store_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state-dir", help="embedded mode's data directory")


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``keys`` and its actions; ``--state-dir`` goes before or after the action."""
    group, action = group_options(_store_options)
    p = commands.add_parser("keys", parents=[group], help="create, list or revoke API keys")
    actions = p.add_subparsers(dest="action", required=True, parser_class=commands._parser_class)
    a = actions.add_parser(
        "create", parents=[action], help="create a key; prints it alone on stdout"
    )
    a.add_argument("--team", required=True)
    a.add_argument("--name", default="")
    scope = a.add_mutually_exclusive_group()
    scope.add_argument("--admin", action="store_true", help="may manage the team's keys (/v1/keys)")
    scope.add_argument(
        "--operator",
        action="store_true",
        help="the pool operator's key: also sets any team's weight and limits, sees every team "
        "in /v1/pool and reads /metrics (made only here, never through the API)",
    )
    a = actions.add_parser(
        "list",
        parents=[action],
        help="list keys (prefix, team, name, created, state, scope, secret: the server secret "
        "the key is hashed under, current or previous during a rotation)",
    )
    a.add_argument("--team")
    a = actions.add_parser("revoke", parents=[action], help="revoke the key with this prefix")
    a.add_argument("prefix")
    p.set_defaults(func=cmd_keys)
