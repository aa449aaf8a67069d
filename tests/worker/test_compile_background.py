"""hypergradient.compile="auto" compiling in the background, and what kept code retains."""

from __future__ import annotations

import gc
import os
import time
import weakref

import pytest
import torch

import core
from tests.worker.test_compile_choice import _auto
from worker import auto_compiled, compile_cache
from worker.compile_cache import compile_counts, keep_compiled_for
from worker.compile_choice import BACKGROUND, CompileTimes, choose, compile_key

pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"
)


def test_an_unmeasured_key_compiles_in_the_background_when_the_run_covers_the_compile():
    # the payoff rule says no (10 x 4 s > 10 s), the run covers the compile once: background
    choice = choose("auto", eager_run_s=10.0, compile_s=4.0, cache="cold", background=BACKGROUND)
    assert not choice.used and choice.background
    assert choice.reason.endswith("compiling in the background, eager meanwhile")
    assert not choose("auto", eager_run_s=3.9, compile_s=4.0, background=BACKGROUND).background
    # a measured speed-up decides alone; no spare core (None), no background
    assert not choose("auto", eager_run_s=10.0, compile_s=4.0, speedup=1.1,
                      background=BACKGROUND).background  # fmt: skip
    assert not choose("auto", eager_run_s=10.0, compile_s=4.0, background=None).background


def _background(tmp_path, monkeypatch):
    """A long job of a key this worker never measured, on a spare core: background."""
    monkeypatch.setattr(auto_compiled, "spare_core", lambda: True)
    times = CompileTimes(tmp_path / "t.json")
    # payoff 1e12: the foreground rule never compiles; the run covers the compile time
    auto, built = _auto(times=times, prior_s=1.0, payoff=1e12)
    auto.iterations = 10**6
    first = auto(built.problem, built.hparams, built.dynamics)
    assert auto.background is not None, built.notes["compile"]
    assert built.notes["compile"]["background"] == "running"
    return auto, built, times, first


def _wait(auto, limit_s: float = 120.0) -> None:
    deadline = time.monotonic() + limit_s
    while auto.background.poll() is None:
        assert time.monotonic() < deadline, "the background compile did not finish"
        time.sleep(0.05)


def _call(auto, built):
    """One hypergradient as the job computes it: through core.Metered, as built."""
    return built.estimator(built.problem, built.hparams, built.dynamics)


def test_the_background_compile_switches_to_compiled_and_records_the_speedup(tmp_path, monkeypatch):
    monkeypatch.setattr(compile_cache, "_RESIDENT", compile_cache._Resident())  # a new worker
    # an empty disk cache: the child's work is all the job's compile can find there
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    # a worker's process compiled before (its warm-up, earlier jobs): the disk cache's keys
    # then depend on whether the child starts where the job's compile will, after a reset
    toy = core.problems.Toy()
    warm_up = core.GradientDescent(steps=3, lr=0.1)
    core.hypergradient(toy, toy.initial_hparams(), warm_up, core.Compiled(core.Full()))
    auto, built, times, first = _background(tmp_path, monkeypatch)
    eager = core.hypergradient(built.problem, built.hparams, built.dynamics, auto.estimator)
    assert torch.equal(first.grad, eager.grad)  # the eager path, bit for bit
    meanwhile = _call(auto, built)  # the job goes on eagerly while the child compiles
    assert "compiled" not in meanwhile.info and torch.equal(meanwhile.grad, eager.grad)
    _wait(auto)
    auto.eager_s = 1e3  # a toy's step takes microseconds: make the speed-up certain
    last_eager = _call(auto, built)  # eager; the child has exited: the next one compiles
    assert "compiled" not in last_eager.info and not auto.meters_saved_tensors
    switched, measured = _call(auto, built), _call(auto, built)
    assert switched.info["compiled"] and measured.info["compiled"]
    torch.testing.assert_close(measured.grad, eager.grad)
    summary = built.notes["compile"]
    assert summary["used"] and "background" not in summary
    assert "compiled in the background in" in summary["reason"]
    assert "measured speed-up" in summary["reason"]
    key = compile_key(auto.spec, built.problem, built.hparams, built.dynamics, auto.estimator)
    assert times.speedup(key) is not None and times.get(key, "cold") is not None
    # the job's own compile found the child's work on disk (a cold one if it had not)
    assert summary["cache"] == "disk"


def test_a_measured_slowdown_after_a_background_compile_goes_back_to_eager(tmp_path, monkeypatch):
    auto, built, _, _ = _background(tmp_path, monkeypatch)
    _wait(auto)
    auto.eager_s = 1e-12  # compiled "slower" than eager
    _call(auto, built), _call(auto, built), _call(auto, built)
    summary = built.notes["compile"]
    assert not summary["used"] and summary["reason"].endswith("< 1: back to eager")
    assert "compiled" not in _call(auto, built).info
    # a resumed job keeps that choice: eager
    again, _ = _auto(prior_s=1e-9)
    again.resume(summary)
    assert again.choice is not None and not again.choice.used


def test_a_failing_background_compile_leaves_the_job_eager_and_names_the_failure(
    tmp_path, monkeypatch
):
    def broken(self, *args):
        raise RuntimeError("Inductor broke")

    monkeypatch.setattr(core.Compiled, "__call__", broken)  # the forked child inherits it
    auto, built, _, first = _background(tmp_path, monkeypatch)
    _wait(auto)
    after = _call(auto, built)
    assert "compiled" not in after.info and torch.equal(after.grad, first.grad)
    summary = built.notes["compile"]
    assert not summary["used"] and "background" not in summary
    assert "background compile failed (RuntimeError: Inductor broke): eager" in summary["reason"]


def test_a_job_that_ends_first_kills_its_background_compile_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(core.Compiled, "__call__", lambda self, *a: time.sleep(600))
    auto, built, _, _ = _background(tmp_path, monkeypatch)
    # killed before resume: the next attempt decides again
    again, _ = _auto(prior_s=1e6)
    again.resume(dict(built.notes["compile"]))
    assert again.choice is None
    pid = auto.background.pid
    auto.close()
    with pytest.raises(ChildProcessError):  # killed and reaped
        os.waitpid(pid, 0)
    summary = built.notes["compile"]
    assert not summary["used"] and "background" not in summary
    assert summary["reason"].endswith("the job ended before the background compile did")


class _Data(core.BilevelProblem):
    """Ridge regression on a data tensor: what a kept compiled step could hold on to."""

    def __init__(self, seed: int):
        gen = torch.Generator().manual_seed(seed)
        self.X = torch.randn(40, 3, generator=gen, dtype=torch.float64)
        self.y = torch.randn(40, generator=gen, dtype=torch.float64)

    def init(self, hparams):
        return torch.zeros(3, dtype=hparams.dtype)

    def inner_loss(self, params, hparams):
        return torch.mean((self.X @ params - self.y) ** 2) + torch.exp(hparams) * params @ params

    def outer_loss(self, params, hparams):
        return torch.mean((self.X @ params - self.y) ** 2)


def _job(problem: _Data) -> torch.Tensor:
    """A compiled job's hypergradients, as a worker runs them (code kept between jobs)."""
    keep_compiled_for("data|truncated|T=4,K=2")
    compiled = core.Compiled(core.Truncated(K=2))
    dynamics = core.GradientDescent(steps=4, lr=0.1)
    hparams = torch.zeros((), dtype=torch.float64)
    for _ in range(2):
        grad = core.hypergradient(problem, hparams, dynamics, compiled).grad
    return grad


def test_code_kept_between_jobs_does_not_keep_a_finished_jobs_data_alive(monkeypatch):
    monkeypatch.setattr(compile_cache, "_RESIDENT", compile_cache._Resident())
    first = _Data(seed=0)
    traced, _ = compile_counts()
    _job(first)
    assert compile_counts()[0] > traced  # compiled: the code that is kept
    data, problem = weakref.ref(first.X), weakref.ref(first)
    del first
    gc.collect()
    # Dynamo's guards on the step read the problem's tensors by shape, not by identity
    assert problem() is None and data() is None
    graphs, _ = compile_counts()
    second = _Data(seed=1)
    _job(second)  # a later job of the key: its code still in memory, nothing traced
    assert compile_counts()[0] == graphs


def test_only_a_cpu_job_compiles_in_a_forked_child():
    """CUDA cannot initialise again in a forked child: a job off the CPU is never given one."""
    from worker.auto_compiled import _on_cpu

    assert _on_cpu({"lam": torch.zeros(3)}) and _on_cpu(torch.ones(1))
    assert not _on_cpu({"lam": torch.zeros(3, device="meta")})


def test_a_short_job_never_compiles_in_the_background_so_its_attempts_agree_to_the_bit():
    from worker.settings import WorkerSettings

    floor = WorkerSettings().compile_background_min_s
    assert floor > 0
    # covers the compile (not ten times: no foreground compile), but shorter than the floor
    short = choose("auto", eager_run_s=floor - 1, compile_s=4.0, background=BACKGROUND,
                   background_min_s=floor)  # fmt: skip
    assert not short.background and not short.used
    long = choose("auto", eager_run_s=floor + 1, compile_s=4.0, background=BACKGROUND,
                  background_min_s=floor)  # fmt: skip
    assert long.background
