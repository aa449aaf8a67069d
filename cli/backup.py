"""``bilevel backup PATH`` and ``bilevel restore PATH``: the store in one verified archive.

Server-side commands, straight on the store like ``keys`` and ``migrate``: ``DATABASE_URL``
(PostgreSQL, through ``pg_dump`` and ``pg_restore``) or the embedded SQLite store under
``--state-dir`` (through SQLite's backup API). What the archive holds and how a restore is
checked: :mod:`jobs.store.backup`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from cli.errors import UsageError
from cli.store import settings_for

__all__ = ["add_commands", "cmd_backup", "cmd_restore"]


def _summary(manifest: dict[str, Any]) -> str:
    counts = manifest["counts"]
    ((part, meta),) = manifest["parts"].items()
    return (f"{manifest['dialect']} store at revision {manifest['alembic_revision']}: "
            f"{counts.get('jobs', 0)} jobs, {counts.get('trace_points', 0)} trace points, "
            f"{counts.get('artifacts', 0)} artifacts, {counts.get('datasets', 0)} data sets; "
            f"{part} {meta['bytes']} bytes, sha256 {meta['sha256']}")  # fmt: skip


def cmd_backup(args: argparse.Namespace) -> int:
    from jobs.settings import StoreSettings
    from jobs.store.backup import BackupError, backup

    settings = settings_for(StoreSettings, args)
    try:
        manifest = backup(settings.store_url, Path(args.path), pg_bin=args.pg_bin)
    except BackupError as exc:
        raise UsageError(str(exc)) from None
    print(f"backed up to {args.path}: {_summary(manifest)}", file=sys.stderr)
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from jobs.settings import StoreSettings
    from jobs.store.backup import BackupError, restore

    settings = settings_for(StoreSettings, args)
    if settings.embedded:
        settings.resolved_state_dir.mkdir(parents=True, exist_ok=True)
    try:
        manifest = restore(settings.store_url, Path(args.path), pg_bin=args.pg_bin)
    except BackupError as exc:
        raise UsageError(str(exc)) from None
    print(f"restored {args.path} (taken {manifest['created_at']}): {_summary(manifest)}",
          file=sys.stderr)  # fmt: skip
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``backup`` and ``restore``."""
    for name, func, help_ in (
        ("backup", cmd_backup, "write the store (jobs, traces, checkpoints, data sets) to a "
         "new archive with a manifest of SHA-256 hashes"),
        ("restore", cmd_restore, "restore an archive into an empty store, checking its "
         "hashes first and every table's row count after"),
    ):  # fmt: skip
        p = commands.add_parser(name, help=help_)
        p.add_argument("path", help="the archive (a tar file)")
        p.add_argument("--state-dir", help="embedded mode's data directory")
        p.add_argument("--pg-bin", type=Path, default=None,
                       help="directory of pg_dump / pg_restore (default: on PATH)")  # fmt: skip
        p.set_defaults(func=func)
