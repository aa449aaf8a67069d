"""``bilevel datasets upload | list | rm``: a team's data sets on the server.

Like the other client commands these import neither the server, SQLAlchemy nor torch: a
file is streamed from disk as it is read (never whole in memory), with a progress bar.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cli.client import (
    Client,
    add_idempotency_option,
    client_options,
    idempotency_headers,
    problem_text,
)
from cli.errors import UsageError
from cli.progress import Bar

__all__ = ["add_commands", "cmd_list", "cmd_rm", "cmd_upload"]

_CHUNK = 1 << 20


def _read(path: Path, bar: Bar) -> Iterator[bytes]:
    done = 0
    with path.open("rb") as f:
        while block := f.read(_CHUNK):
            done += len(block)
            bar.show(done, "bytes")
            yield block


def cmd_upload(args: argparse.Namespace) -> int:
    import httpx

    path = Path(args.file)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise UsageError(f"cannot read {args.file}: {exc.strerror}") from None
    bar = Bar(size)
    r = Client(args).request(
        "POST",
        "/v1/datasets",
        params={"name": args.name or path.stem},
        content=_read(path, bar),
        # the length up front lets the server refuse a file over its limit before it is sent
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Length": str(size),
            **idempotency_headers(args),
        },
        # the server validates the whole file before it answers
        timeout=httpx.Timeout(30.0, read=600.0, write=None),
    )
    bar.close()
    if r.status_code == 422:
        raise UsageError(f"{args.file}: {problem_text(r)}")
    if r.status_code >= 400:
        raise UsageError(f"HTTP {r.status_code}: {problem_text(r)}")
    body = r.json()
    print(body["id"])
    print(_describe(body), file=sys.stderr)
    return 0


def _describe(d: dict[str, Any]) -> str:
    rows = ", ".join(f"{k} {v}" for k, v in d["rows"].items())
    task = f"classification, {d['n_classes']} classes" if d["n_classes"] else d["task"]
    return (
        f"{d['name']}: {d['n_features']} features, {task}; rows {rows}; "
        f"{len(d['arrays'])} arrays, {d['size']} bytes, sha256 {d['sha256'][:12]}"
    )


def cmd_list(args: argparse.Namespace) -> int:
    body = Client(args).call("GET", "/v1/datasets").json()
    print(f"{'id':36}  {'name':20}  {'task':14}  {'rows (train/val/test)':22}  {'bytes':>12}")
    for d in body["data"]:
        rows = "/".join(str(d["rows"].get(s, "-")) for s in ("train", "val", "test"))
        print(f"{d['id']:36}  {d['name'][:20]:20}  {d['task']:14}  {rows:22}  {d['size']:>12}")
    print(f"{body['bytes_used']} of {body['quota_bytes']} bytes used", file=sys.stderr)
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    Client(args).call("DELETE", f"/v1/datasets/{args.id}")
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
