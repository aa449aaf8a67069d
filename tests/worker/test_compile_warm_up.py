"""The job process's warm-up: compiled into the worker's cache when BILEVEL_COMPILE_WARM_UP is
on (the default), eager when it is off (the test suite's setting for its many workers)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.e2e.workers import ROOT
from worker.settings import WorkerSettings


def test_the_default_warms_up_compiled_and_the_suite_turns_it_off(monkeypatch):
    monkeypatch.delenv("BILEVEL_COMPILE_WARM_UP", raising=False)
    assert WorkerSettings().compile_warm_up is True
    monkeypatch.setenv("BILEVEL_COMPILE_WARM_UP", "false")
    assert WorkerSettings().compile_warm_up is False


def test_the_compiled_warm_up_leaves_kernels_in_the_workers_cache(tmp_path):
    # a process of its own, as a job process: Inductor reads its cache directory once
    cache = tmp_path / "compile-cache"
    env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"}
    code = (
        f"from pathlib import Path; from worker import runner; runner.warm_up(Path({str(cache)!r}))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    written = [p for p in cache.rglob("*") if p.is_file()]
    assert written, f"no compiled artifact under {cache}"
