"""Throwaway Redis, PostgreSQL, API and worker processes that the fault tests stop at will.

Nothing here touches the machine's own PostgreSQL or Redis: every server runs on a free
port out of a temporary directory and is removed at the end. ``initdb`` refuses to run as
root, so as root the PostgreSQL processes run as the ``postgres`` user (``runuser``).
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.e2e.workers import ROOT, CeleryWorker, Process
from tests.factories import free_port, wait_until

Worker = CeleryWorker  # the fault tests' name for it
FIGURES = ROOT / "out" / "faults"


def record(test: str, **figures: Any) -> None:
    """Print one summary line and write ``out/faults/<test>.json`` for the closing note."""
    FIGURES.mkdir(parents=True, exist_ok=True)
    (FIGURES / f"{test}.json").write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    flat = {k: v for k, v in figures.items() if not isinstance(v, dict)}
    print(f"\nFAULTS {test}: " + ", ".join(f"{k}={v}" for k, v in flat.items()))


# -- Redis -----------------------------------------------------------------------------------


def redis_missing() -> str | None:
    return None if shutil.which("redis-server") else "redis-server not on PATH"


class RedisServer:
    """``redis-server`` on a free port; ``appendonly`` decides whether messages survive."""

    def __init__(self, directory: Path, *, appendonly: bool):
        self.dir, self.appendonly = directory, appendonly
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        import redis

        cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
               "--save", "", "--appendonly", "yes" if self.appendonly else "no",
               "--dir", str(self.dir), "--daemonize", "no"]  # fmt: skip
        log = open(self.dir / "redis.log", "ab")  # noqa: SIM115 - owned by the process
        proc = self.proc = subprocess.Popen(cmd, stdout=log, stderr=log)
        log.close()

        def up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"redis-server exited {proc.returncode}")
            try:
                return redis.Redis(port=self.port, socket_connect_timeout=0.5).ping()
            except redis.RedisError:
                return False

        wait_until(up, 10, f"redis-server on {self.port}")
        return self

    def stop(self, *, kill: bool = False) -> None:
        """SIGTERM (Redis's clean shutdown: the AOF is flushed) or SIGKILL."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            self.proc.wait(10)

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()
        self.restarts += 1

    def llen(self, queue: str) -> int:
        import redis

        return redis.Redis(port=self.port).llen(queue)


# -- PostgreSQL ------------------------------------------------------------------------------


def _pg_bindir() -> Path | None:
    for d in ["/usr/local/bin", *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]:
        if (Path(d) / "initdb").exists() and (Path(d) / "pg_ctl").exists():
            return Path(d)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def as_postgres_missing(what: str) -> str | None:
    """Why ``what``, which refuses to run as root, cannot run here (as root: as the
    ``postgres`` user, through ``runuser``), or ``None``."""
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return f"running as root and there is no postgres user for {what}"
        if not shutil.which("runuser"):
            return "running as root and runuser is missing"
    return None


def postgres_missing() -> str | None:
    if _pg_bindir() is None:
        return "initdb/pg_ctl not found (PATH, /usr/local/bin, /usr/lib/postgresql/*/bin)"
    return as_postgres_missing("initdb")


class PostgresServer:
    """A cluster of its own (``initdb``, trust auth, fsync off) under ``pg_ctl``."""

    def __init__(self) -> None:
        bindir = _pg_bindir()
        if bindir is None:
            raise RuntimeError(postgres_missing())
        self.bindir = bindir
        self.port = free_port()
        # not under pytest's tmp_path: its parents are private to root, and the server
        # runs as postgres
        self.dir = Path(tempfile.mkdtemp(prefix="bilevel-faults-pg-"))
        self.data = self.dir / "data"
        self.restarts = 0

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=60)

    def init(self) -> PostgresServer:
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--no-sync", "-E", "UTF8", "--locale=C")  # fmt: skip
        return self

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        # throwaway data: no fsync; unix socket in our directory, TCP on 127.0.0.1 only
        opts = " ".join([
            f"-p {self.port}", f"-k {self.dir}", "-c listen_addresses=127.0.0.1",
            "-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off",
        ])  # fmt: skip
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "server.log"),
                  "-o", opts, "-w", "-t", "30", "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """``fast`` ends every session (what a restart or failover does to clients)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()
        self.restarts += 1

    def execute(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


# -- processes of ours -----------------------------------------------------------------------


class CrashingWorker(CeleryWorker):
    """A Celery worker with ``fault`` (``tests.faults.hooks.FAULTS``: by default it SIGKILLs
    itself) at the second iteration of any job named ``crash_job``: the same command line,
    started through ``tests.faults.crashing_worker``."""

    def __init__(
        self, env: dict[str, str], log_dir: Path, name: str, crash_job: str, fault: str = "kill"
    ):
        super().__init__(env, log_dir, name)
        launcher, celery_args = self.cmd[:3], self.cmd[3:]
        if launcher != [sys.executable, "-m", "celery"]:
            raise RuntimeError(f"unexpected worker command line: {self.cmd}")
        self.cmd = [sys.executable, "-m", "tests.faults.crashing_worker", fault, crash_job,
                    *celery_args]  # fmt: skip


class PluginlessWorker(CeleryWorker):
    """A Celery worker without the problem plugins the tests install: the same command line,
    started through ``tests.faults.pluginless_worker``."""

    def __init__(self, env: dict[str, str], log_dir: Path, name: str):
        super().__init__(env, log_dir, name)
        launcher, celery_args = self.cmd[:3], self.cmd[3:]
        if launcher != [sys.executable, "-m", "celery"]:
            raise RuntimeError(f"unexpected worker command line: {self.cmd}")
        self.cmd = [sys.executable, "-m", "tests.faults.pluginless_worker", *celery_args]


class Api(Process):
    """The API under uvicorn (``create_app`` reads ``DATABASE_URL``, ``BROKER_URL``); ``name``
    tells the logs of several apart (``<name>.log``)."""

    ready_marker = b"Application startup complete"

    def __init__(self, env: dict[str, str], log_dir: Path, name: str = "api"):
        self.port = free_port()
        cmd = [sys.executable, "-m", "uvicorn", "api.main:create_app", "--factory",
               "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "info"]  # fmt: skip
        super().__init__(cmd, env, log_dir / f"{name}.log")
        self.name = name

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"
