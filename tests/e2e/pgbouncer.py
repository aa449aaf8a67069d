"""A PgBouncer of the test's own, in transaction mode, in front of the test PostgreSQL.

It listens on a free port of 127.0.0.1 with its own configuration, user list and log in a
temporary directory; every database name maps to the same name on the upstream server
(``* = host=... port=...``), so a test's throwaway database is reachable through it at once.
PgBouncer refuses to run as root, so as root it runs as the ``postgres`` user (``runuser``),
like the fault suite's PostgreSQL.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from tests.factories import free_port, wait_until
from tests.faults.services import as_postgres_missing

__all__ = ["PgBouncer", "pgbouncer_missing"]


def _binary() -> str | None:
    # Debian installs it in /usr/sbin, which a user's PATH may lack
    return shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")


def pgbouncer_missing() -> str | None:
    """Why no PgBouncer can be started here, or ``None``."""
    if _binary() is None:
        return "pgbouncer not on PATH nor in /usr/sbin (Debian: apt-get install pgbouncer)"
    return as_postgres_missing("pgbouncer")


class PgBouncer:
    """``pgbouncer`` with ``pool_mode = transaction`` and ``pool_size`` server connections
    per database and user: its clients share those, one transaction at a time.

    Args:
        upstream: any URL of the PostgreSQL server (its host, port and user are used).
        pool_size: ``default_pool_size`` (and ``max_db_connections``): the most server
            connections it opens to one database.
    """

    def __init__(self, upstream: str, pool_size: int):
        parts = urlsplit(upstream)
        self.host, self.upstream_port = parts.hostname or "127.0.0.1", parts.port or 5432
        self.user = parts.username or "postgres"
        self.pool_size = pool_size
        self.port = free_port()
        # not under pytest's tmp_path: its parents are private to root
        self.dir = Path(tempfile.mkdtemp(prefix="bilevel-pgbouncer-"))
        self.log = self.dir / "pgbouncer.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, database: str) -> str:
        """``database`` reached through the pooler."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def start(self) -> PgBouncer:
        ini = self.dir / "pgbouncer.ini"
        users = self.dir / "users.txt"
        users.write_text(f'"{self.user}" ""\n')  # trust: the name must still be listed
        ini.write_text(
            "[databases]\n"
            f"* = host={self.host} port={self.upstream_port}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {users}\nadmin_users = {self.user}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {self.pool_size}\nmax_db_connections = {self.pool_size}\n"
            "min_pool_size = 0\nreserve_pool_size = 0\nmax_client_conn = 500\n"
            f"logfile = {self.log}\n"
        )
        cmd = [_binary() or "pgbouncer", str(ini)]
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            for path in (self.dir, ini, users):
                os.chown(path, pw.pw_uid, pw.pw_gid)
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        # a session of its own: stop() signals the group (runuser and pgbouncer under it)
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        wait_until(self._listening, 10, f"pgbouncer on {self.port}")
        return self

    def _listening(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"pgbouncer exited {self.proc.returncode}:\n{self.log_text()}")
        return b"listening on 127.0.0.1" in (self.log.read_bytes() if self.log.exists() else b"")

    def show(self, what: str) -> list[dict[str, object]]:
        """``SHOW <what>`` on the admin console (``POOLS``, ``SERVERS``, ``CLIENTS``, ...)."""
        import psycopg

        # the console speaks only the simple query protocol: a client-side cursor
        with psycopg.connect(self.url("pgbouncer"), autocommit=True) as conn:
            cur = psycopg.ClientCursor(conn)
            cur.execute(f"SHOW {what}")
            names = [c.name for c in cur.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)  # SIGINT: shut down at once
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)
