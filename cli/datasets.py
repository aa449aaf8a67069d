"""``bilevel datasets upload | list | rm``: a team's data sets on the server.

Like the other client commands these import neither the server, SQLAlchemy nor torch: a
file is streamed from disk as it is read (never whole in memory), with a progress bar.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cli.client import add_idempotency_option, client_options, connect
from cli.errors import UsageError
from client import ApiError, Dataset
from client.progress import Bar

__all__ = ["add_commands", "cmd_list", "cmd_rm", "cmd_upload"]


def cmd_upload(args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise UsageError(f"cannot read {args.file}: {exc.strerror}") from None
    c = connect(args)
    try:
        d = c.datasets.upload(path, name=args.name or path.stem, progress=Bar(size),
                              idempotency_key=args.idempotency_key)  # fmt: skip
    except ApiError as exc:
        raise UsageError(
            f"{args.file}: {exc.describe()}" if exc.status == 422 else str(exc)
        ) from None
    print(d.id)
    print(_describe(d), file=sys.stderr)
    return 0


def _describe(d: Dataset) -> str:
    rows = ", ".join(f"{k} {v}" for k, v in d.rows.items())
    task = f"classification, {d.n_classes} classes" if d.n_classes else d.task
    return (
        f"{d.name}: {d.n_features} features, {task}; rows {rows}; "
        f"{len(d.arrays)} arrays, {d.size} bytes, sha256 {d.sha256[:12]}"
    )


def cmd_list(args: argparse.Namespace) -> int:
    body = connect(args).get("/v1/datasets")
    print(f"{'id':36}  {'name':20}  {'task':14}  {'rows (train/val/test)':22}  {'bytes':>12}")
    for d in body["data"]:
        rows = "/".join(str(d["rows"].get(s, "-")) for s in ("train", "val", "test"))
        print(f"{d['id']:36}  {d['name'][:20]:20}  {d['task']:14}  {rows:22}  {d['size']:>12}")
    print(f"{body['bytes_used']} of {body['quota_bytes']} bytes used", file=sys.stderr)
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    connect(args).datasets.delete(args.id)
    print(f"deleted {args.id}")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``datasets`` with its ``upload``, ``list`` and ``rm`` commands."""
    client = [client_options()]
    group = commands.add_parser("datasets", help="upload, list and delete data sets")
    sub = group.add_subparsers(dest="datasets_command", required=True, metavar="COMMAND")
    p = sub.add_parser(
        "upload", help="upload an .npz or .safetensors file; prints its id", parents=client
    )
    p.add_argument("file")
    p.add_argument("--name", help="the data set's name (default: the file's stem)")
    add_idempotency_option(p, "data set")
    p.set_defaults(func=cmd_upload)
    p = sub.add_parser("list", help="the team's data sets", parents=client)
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("rm", help="delete a data set no queued or running job uses", parents=client)
    p.add_argument("id")
    p.set_defaults(func=cmd_rm)
