"""Subprocesses of this project for the integration tests (``celery worker``, the API)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from tests.factories import wait_until

ROOT = Path(__file__).resolve().parents[2]


class Process:
    """A subprocess of this project, logging to a file (appended across restarts).

    It runs in the repository root (``python -m`` imports this tree) unless ``cwd`` is changed:
    another release's processes run elsewhere, so they import their own installed packages.
    """

    ready_marker = b""

    def __init__(self, cmd: list[str], env: dict[str, str], log_path: Path):
        self.cmd, self.env, self.log_path = cmd, env, log_path
        self.cwd = ROOT
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def launch(self) -> Process:
        self._mark = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.cmd, cwd=self.cwd, env={**os.environ, **self.env}, stdout=log, stderr=log
            )
        self.starts += 1
        return self

    def _launched(self) -> subprocess.Popen[bytes]:
        if self.proc is None:
            raise RuntimeError(f"{self.cmd[:4]} was never launched")
        return self.proc

    def ready(self) -> bool:
        """Whether the process has logged its ready marker since it was last launched."""
        proc = self._launched()
        if proc.poll() is not None:
            raise RuntimeError(f"{self.cmd[:4]} exited {proc.returncode}:\n{self.tail()}")
        return self.ready_marker in self.log_path.read_bytes()[self._mark :]

    def wait_ready(self, timeout: float = 120.0) -> Process:
        wait_until(self.ready, timeout, f"{self.log_path.name} ready", poll=0.1)
        return self

    def start(self, timeout: float = 120.0) -> Process:
        return self.launch().wait_ready(timeout)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, n: int = 4000) -> str:
        return self.log_path.read_bytes()[-n:].decode(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no cleanup, no ack; a worker's lease is left to expire."""
        if self.alive():
            proc = self._launched()
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)

    def stop(self) -> None:
        """SIGTERM, SIGKILL after 15 s."""
        if self.alive():
            proc = self._launched()
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


class CeleryWorker(Process):
    """``celery -A worker.app worker --pool solo`` on the test's CPU queue."""

    ready_marker = b" ready."

    def __init__(self, env: dict[str, str], log_dir: Path, name: str):
        queue = f"{env['BILEVEL_QUEUE_PREFIX']}.cpu"
        cmd = [sys.executable, "-m", "celery", "-A", "worker.app", "worker", "--pool", "solo",
               "-Q", queue, "-n", f"{name}@%h", "--without-gossip", "--without-mingle",
               "--without-heartbeat", "-l", "INFO"]  # fmt: skip
        super().__init__(cmd, env, log_dir / f"{name}.log")
        self.name = name

    @property
    def ident(self) -> str:
        """What the runner writes into ``jobs.worker``: ``host:pid``."""
        return f"{socket.gethostname()}:{self.pid}"
