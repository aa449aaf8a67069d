"""Backups of the job store: one archive, verified by hashes, restored into an empty store.

Everything the service keeps is in its store: jobs and their traces, checkpoints and learned
hyperparameters (``artifacts``), data sets' bytes (``dataset_blobs``, ``dataset_chunks``),
studies, teams, keys, webhooks, the audit log. So a backup is the store, taken as one
consistent snapshot, in a tar archive with a ``manifest.json`` that holds every part's
SHA-256 and size and the row count of every table:

- PostgreSQL: ``pg_dump --format=custom`` of a snapshot exported by a transaction that
  counts the rows in the same snapshot (so the counts are those of the dump, while the
  service goes on writing); restored with ``pg_restore --single-transaction``;
- SQLite: a copy made by SQLite's backup API (consistent while the server writes), counted
  in the copy.

A restore reads the manifest, checks every part's hash before anything is written (a
corrupted or truncated archive is refused, naming the part), needs an empty store, and
after restoring compares every table's row count with the manifest's. The server secret
(``BILEVEL_KEY_SECRET``) is not in the archive: API keys only verify, and the restored
service only reads webhook secrets, under the secret the backup's server used.

Running jobs have no worker after a restore: their leases end at once, so the next pass of
the reaper (a worker's, or the embedded executor's at its start) requeues them, and they
resume from their checkpoints (``jobs.store.repo.lifecycle.reap``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, create_engine, inspect, make_url, text

from jobs.store.db import make_engine, make_session_factory, normalize_url

__all__ = ["FORMAT", "BackupError", "backup", "read_manifest", "restore"]

#: what ``manifest.json``'s ``format`` says, and the version of its layout
FORMAT = "bilevel-backup"
VERSION = 1
MANIFEST = "manifest.json"
# the store's part, by dialect: the only names a restore extracts
_PARTS = {"postgresql": "store.pgdump", "sqlite": "store.sqlite3"}
_CHUNK = 1 << 20


class BackupError(Exception):
    """A backup or restore that cannot go on; the message is one line naming the cause."""


def _dialect(url: str) -> str:
    name = make_url(normalize_url(url)).get_backend_name()
    if name not in _PARTS:
        raise BackupError(f"the store must be PostgreSQL or SQLite, got {name}")
    return name


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def _counts(conn: Connection) -> dict[str, int]:
    """Rows per table (``alembic_version`` included: the schema's revision is restored too)."""
    names = sorted(inspect(conn).get_table_names())
    return {t: int(conn.execute(text(f'SELECT count(*) FROM "{t}"')).scalar_one()) for t in names}


def _revision(counts: dict[str, int], conn: Connection) -> str | None:
    if "alembic_version" not in counts:
        return None
    rev = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return str(rev) if rev is not None else None


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URL for pg_dump / pg_restore, and an environment holding its password.

    The password goes in ``PGPASSWORD``, not on the command line, where ``ps`` shows it.
    """
    u = make_url(normalize_url(url))
    env = dict(os.environ)
    if u.password is not None:
        env["PGPASSWORD"] = str(u.password)
    return u.set(drivername="postgresql", password=None).render_as_string(), env


def _run(cmd: list[str], env: dict[str, str]) -> None:
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise BackupError(f"{cmd[0]} not found: install PostgreSQL's client tools "
                          "(of the server's major version) or pass --pg-bin") from None  # fmt: skip
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.strip().splitlines() if ln.strip()]
        why = lines[0] if lines else f"exit code {done.returncode}"
        raise BackupError(f"{Path(cmd[0]).name} failed: {why}")


def _tool(pg_bin: Path | None, name: str) -> str:
    return str(pg_bin / name) if pg_bin is not None else name


def backup(url: str, path: Path, *, pg_bin: Path | None = None) -> dict[str, Any]:
    """Write the store at ``url`` to the archive ``path`` (a new file).

    Args:
        url: the store (``DATABASE_URL``, or the embedded SQLite file's URL).
        path: the archive to write; it must not exist.
        pg_bin: the directory of ``pg_dump`` (default: found on ``PATH``).

    Returns:
        The manifest written.

    Raises:
        BackupError: the archive exists, the store is unreachable, or pg_dump failed.
    """
    path = Path(path)
    if path.exists():
        raise BackupError(f"{path} exists: a backup is written to a new file")
    dialect = _dialect(url)
    part = _PARTS[dialect]
    with tempfile.TemporaryDirectory(prefix="bilevel-backup-") as tmp:
        out = Path(tmp) / part
        if dialect == "postgresql":
            counts, revision, server = _dump_postgres(url, out, pg_bin)
        else:
            counts, revision, server = _copy_sqlite(url, out)
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "dialect": dialect,
            "server_version": server,
            "alembic_revision": revision,
            "parts": {part: {"sha256": _sha256(out), "bytes": out.stat().st_size}},
            "counts": counts,
        }
        partial = path.with_name(path.name + ".partial")
        with tarfile.open(partial, "w") as tar:
            data = json.dumps(manifest, indent=2, sort_keys=True).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mtime = len(data), int(datetime.now(UTC).timestamp())
            tar.addfile(info, io.BytesIO(data))
            tar.add(out, arcname=part)
        partial.replace(path)  # a backup cut short leaves no archive that looks whole
    return manifest


def _dump_postgres(
    url: str, out: Path, pg_bin: Path | None
) -> tuple[dict[str, int], str | None, str]:
    """pg_dump of a snapshot this transaction exports, with the counts read in it."""
    libpq, env = _libpq(url)
    engine = create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
            snapshot = conn.execute(text("SELECT pg_export_snapshot()")).scalar_one()
            counts = _counts(conn)
            revision = _revision(counts, conn)
            server = str(conn.execute(text("SHOW server_version")).scalar_one())
            # the snapshot lives as long as this transaction: pg_dump runs inside it
            _run([_tool(pg_bin, "pg_dump"), "--format=custom", f"--snapshot={snapshot}",
                  f"--file={out}", f"--dbname={libpq}"], env)  # fmt: skip
    except BackupError:
        raise
    except Exception as exc:
        raise BackupError(f"could not read the store: {_first_line(exc)}") from None
    finally:
        engine.dispose()
    return counts, revision, server


def _sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database:
        raise BackupError(f"the SQLite URL names no file: {url}")
    return Path(database)


def _copy_sqlite(url: str, out: Path) -> tuple[dict[str, int], str | None, str]:
    """A consistent copy through SQLite's backup API (the server may write meanwhile)."""
    src = _sqlite_path(url)
    if not src.is_file():
        raise BackupError(f"no store at {src}")
    with (
        _closing(sqlite3.connect(src, timeout=30)) as source,
        _closing(sqlite3.connect(out)) as copy,
    ):
        source.backup(copy)
    engine = create_engine(f"sqlite:///{out}")
    try:
        with engine.connect() as conn:
            counts = _counts(conn)
            revision = _revision(counts, conn)
    finally:
        engine.dispose()
    return counts, revision, f"sqlite {sqlite3.sqlite_version}"


@contextmanager
def _closing(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    try:
        yield conn
    finally:
        conn.close()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


@contextmanager
def read_manifest(path: Path) -> Iterator[tuple[dict[str, Any], Path]]:
    """Open the archive ``path``, check every part against its manifest, and yield both.

    Yields:
        ``(manifest, directory)``: the parts are extracted, verified, under ``directory``
        (removed afterwards).

    Raises:
        BackupError: unreadable archive, manifest of another format, a part missing, or a
            part whose size or SHA-256 is not the manifest's.
    """
    path = Path(path)
    if not path.is_file():
        raise BackupError(f"no backup at {path}")
    with tempfile.TemporaryDirectory(prefix="bilevel-restore-") as tmp:
        try:
            with tarfile.open(path, "r") as tar:
                manifest = _manifest(tar, path)
                for name, want in manifest["parts"].items():
                    _extract(tar, path, name, want, Path(tmp))
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise BackupError(
                f"backup {path} is not a readable archive: {_first_line(exc)}"
            ) from None
        yield manifest, Path(tmp)


def _manifest(tar: tarfile.TarFile, path: Path) -> dict[str, Any]:
    try:
        f = tar.extractfile(MANIFEST)
        manifest = json.loads(f.read()) if f is not None else None
    except KeyError:
        raise BackupError(f"backup {path} has no {MANIFEST}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BackupError(f"backup {path}: {MANIFEST} is not JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"backup {path}: {MANIFEST} is not a {FORMAT} manifest")
    if manifest.get("version") != VERSION:
        raise BackupError(f"backup {path}: manifest version must be {VERSION}, "
                          f"got {manifest.get('version')!r}")  # fmt: skip
    dialect = manifest.get("dialect")
    parts = manifest.get("parts")
    if dialect not in _PARTS or not isinstance(parts, dict) or set(parts) != {_PARTS[dialect]}:
        raise BackupError(f"backup {path}: the manifest's dialect and parts do not match "
                          f"({dialect!r}, {sorted(parts or {})})")  # fmt: skip
    return manifest


def _extract(tar: tarfile.TarFile, path: Path, name: str, want: dict[str, Any], to: Path) -> None:
    """Copy part ``name`` out, hashing as it goes; refuse it unless size and hash match."""
    try:
        src = tar.extractfile(name)
    except KeyError:
        src = None
    if src is None:
        raise BackupError(f"backup {path} is corrupt: part {name} is missing")
    h, size = hashlib.sha256(), 0
    with src, (to / name).open("wb") as dst:
        while block := src.read(_CHUNK):
            h.update(block)
            size += len(block)
            dst.write(block)
    if size != want.get("bytes") or h.hexdigest() != want.get("sha256"):
        raise BackupError(
            f"backup {path} is corrupt: part {name} has {size} bytes and sha256 "
            f"{h.hexdigest()[:16]}..., the manifest says {want.get('bytes')} bytes and "
            f"{str(want.get('sha256'))[:16]}..."
        )


def restore(url: str, path: Path, *, pg_bin: Path | None = None) -> dict[str, Any]:
    """Restore the archive ``path`` into the empty store at ``url``.

    Args:
        url: the store to fill: an empty PostgreSQL database, or a SQLite file that does
            not exist yet.
        path: the archive :func:`backup` wrote.
        pg_bin: the directory of ``pg_restore`` (default: found on ``PATH``).

    Returns:
        The archive's manifest.

    Raises:
        BackupError: a corrupt archive, a store that is not empty, a dialect other than the
            backup's, pg_restore failed, or a table whose rows differ from the manifest's.
    """
    dialect = _dialect(url)
    with read_manifest(path) as (manifest, parts):
        if manifest["dialect"] != dialect:
            raise BackupError(f"backup {path} is of a {manifest['dialect']} store; "
                              f"the store to restore into is {dialect}")  # fmt: skip
        part = parts / _PARTS[dialect]
        if dialect == "postgresql":
            _restore_postgres(url, part, pg_bin)
        else:
            _restore_sqlite(url, part)
    _check_and_release(url, manifest, path)
    return manifest


def _restore_postgres(url: str, part: Path, pg_bin: Path | None) -> None:
    engine = create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            tables = sorted(inspect(conn).get_table_names())
    except Exception as exc:
        raise BackupError(f"could not reach the store: {_first_line(exc)}") from None
    finally:
        engine.dispose()
    if tables:
        name = make_url(normalize_url(url)).database
        raise BackupError(f"restore needs an empty database; {name} has {len(tables)} tables "
                          f"({', '.join(tables[:3])}, ...)")  # fmt: skip
    libpq, env = _libpq(url)
    # one transaction: a restore that fails leaves the database empty, to try again
    _run([_tool(pg_bin, "pg_restore"), "--single-transaction", "--exit-on-error", "--no-owner",
          "--no-privileges", f"--dbname={libpq}", str(part)], env)  # fmt: skip


def _restore_sqlite(url: str, part: Path) -> None:
    dst = _sqlite_path(url)
    if dst.exists() and dst.stat().st_size > 0:
        raise BackupError(f"restore needs an empty store; {dst} exists")
    dst.parent.mkdir(parents=True, exist_ok=True)
    partial = dst.with_name(dst.name + ".partial")
    shutil.copyfile(part, partial)
    partial.replace(dst)


def _check_and_release(url: str, manifest: dict[str, Any], path: Path) -> None:
    """Every table's rows as the manifest counted them; then end the running jobs' leases."""
    from jobs.store import repo

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            counts = _counts(conn)
        if counts != manifest["counts"]:
            differ = sorted(t for t in set(counts) | set(manifest["counts"])
                            if counts.get(t) != manifest["counts"].get(t))  # fmt: skip
            t = differ[0]
            raise BackupError(f"restored store does not match backup {path}: table {t} has "
                              f"{counts.get(t)} rows, the manifest says "
                              f"{manifest['counts'].get(t)}")  # fmt: skip
        with make_session_factory(engine).begin() as s:
            repo.expire_running_leases(s)
    finally:
        engine.dispose()
