"""The previous release, built into a virtual environment of its own, for the upgrade tests.

A rolling upgrade runs the previous release's API and workers on the database this version
migrates, so the tests need that release installed as it shipped: its tree from git
(``git archive``), installed non-editable (torch's CPU wheel first, as ``scripts/setup.sh``
does) with the example problem plugin, under ``~/.cache/bilevel-upgrade/<commit>``. A build
is reused once complete (the ``complete`` marker is written last).

``BILEVEL_PREVIOUS_RELEASE`` names another commit or tag; ``BILEVEL_UPGRADE_CACHE`` another
cache directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.e2e.workers import ROOT, Process

# the last landed release before migrations 0013-0015 (its migration head is 0012)
PREVIOUS_RELEASE = os.environ.get("BILEVEL_PREVIOUS_RELEASE", "a687f36")
CACHE = Path(os.environ.get("BILEVEL_UPGRADE_CACHE", Path.home() / ".cache" / "bilevel-upgrade"))
_PIP = ["-m", "pip", "install", "--quiet", "--disable-pip-version-check"]

# what the old release's tables are, as its own SQLAlchemy metadata declares them
_DUMP_METADATA = """
import json
import jobs.store.models
from jobs.store.base import Base
print(json.dumps({
    name: {
        c.name: {"nullable": bool(c.nullable), "server_default": c.server_default is not None}
        for c in table.columns
    }
    for name, table in Base.metadata.tables.items()
}))
"""


class PreviousRelease:
    """The previous release's tree and virtual environment; ``python`` runs its code."""

    def __init__(self, commit: str = PREVIOUS_RELEASE, cache: Path = CACHE):
        self.commit = commit
        self.dir = cache / commit
        self.src, self.venv = self.dir / "src", self.dir / "venv"
        # the old processes' working directory: nothing importable there, so ``python -m``
        # loads the installed release, never this checkout
        self.run_dir = self.dir / "run"

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    def built(self) -> bool:
        return (self.dir / "complete").exists()

    def build(self) -> PreviousRelease:
        """Build (minutes, once) or reuse; raises ``RuntimeError`` naming the failed step."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.built():
            return self
        shutil.rmtree(self.src, ignore_errors=True)
        shutil.rmtree(self.venv, ignore_errors=True)
        self.src.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", self.commit], capture_output=True, timeout=120
        )
        if archive.returncode != 0:
            raise RuntimeError(f"git archive {self.commit}: {archive.stderr.decode().strip()}")
        subprocess.run(["tar", "-x", "-C", str(self.src)], input=archive.stdout, check=True)
        steps = [
            [sys.executable, "-m", "venv", str(self.venv)],
            [self.python, *_PIP, "torch==2.13.0"],
            [self.python, *_PIP, f"{self.src}[api,worker]"],
            [self.python, *_PIP, str(self.src / "examples" / "plugins" / "bilevel_digits_mlp")],
        ]
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, timeout=1800)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(step)} exited {done.returncode}:\n{done.stderr}")
        (self.dir / "complete").write_text(self.commit + "\n")
        return self

    def run(self, code: str, *args: str, env: dict[str, str] | None = None) -> str:
        """``python -c code args`` in the release's environment; its stdout."""
        done = subprocess.run(
            [self.python, "-c", code, *args], cwd=self.run_dir, capture_output=True, text=True,
            env={**os.environ, **(env or {})}, timeout=300,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"{self.commit}: python -c exited {done.returncode}:\n{done.stderr}")
        return done.stdout

    def migrate(self, url: str) -> None:
        """The release's own migrations, to its head."""
        self.run("import sys; from migrations import upgrade; upgrade(sys.argv[1])", url)

    def metadata(self) -> dict[str, dict[str, dict[str, bool]]]:
        """``{table: {column: {"nullable", "server_default"}}}`` of the release's models."""
        return json.loads(self.run(_DUMP_METADATA))

    def own(self, process: Process) -> Process:
        """``process`` (built for this checkout) run by the release instead."""
        if process.cmd[0] != sys.executable:
            raise RuntimeError(f"unexpected command line: {process.cmd}")
        process.cmd = [self.python, *process.cmd[1:]]
        process.cwd = self.run_dir
        return process
