"""Real ``celery worker`` subprocesses for the integration tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class CeleryWorker:
    """``celery -A worker.app worker --pool solo`` on this session's queue, logging to a file."""

    def __init__(self, env: dict[str, str], log_dir: Path, name: str):
        self.env, self.log_path, self.name = env, log_dir / f"{name}.log", name
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120.0) -> CeleryWorker:
        queue = f"{self.env['BILEVEL_QUEUE_PREFIX']}.cpu"
        cmd = [
            sys.executable, "-m", "celery", "-A", "worker.app", "worker", "--pool", "solo",
            "-Q", queue, "-n", f"{self.name}@%h", "--without-gossip", "--without-mingle",
            "--without-heartbeat", "-l", "INFO",
        ]  # fmt: skip
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - kept open for the process
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env={**os.environ, **self.env}, stdout=self.log, stderr=self.log
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited {self.proc.returncode}:\n{self.tail()}")
            if b" ready." in self.log_path.read_bytes():
                return self
            time.sleep(0.1)
        raise RuntimeError(f"worker not ready after {timeout}s:\n{self.tail()}")

    def tail(self, n: int = 4000) -> str:
        return self.log_path.read_bytes()[-n:].decode(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no cleanup, no ack, the lease is left to expire."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM (Celery's warm shutdown), SIGKILL after 15 s."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        if not self.log.closed:
            self.log.close()
