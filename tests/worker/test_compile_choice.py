"""hypergradient.compile: the rule of "auto", the reasons, the worker's compile times."""

from __future__ import annotations

import copy

import pytest
import torch

import core
from jobs.specs.job import parse_spec
from tests.factories import example, tiny_spec
from worker import compile_cache
from worker.auto_compiled import AutoCompiled
from worker.build import CompileOptions, build
from worker.compile_cache import keep_compiled_for
from worker.compile_choice import (
    CompileChoice,
    CompileTimes,
    Prior,
    choose,
    compile_key,
    compile_refusal,
)


@pytest.mark.parametrize(
    ("eager_run_s", "compile_s", "payoff", "used"),
    [
        (100.0, 10.0, 10.0, True),  # exactly payoff x compile time: it pays
        (99.9, 10.0, 10.0, False),
        (1000.0, 10.0, 100.0, True),
        (999.0, 10.0, 100.0, False),
        (0.01, 30.0, 10.0, False),
    ],
)
def test_auto_compiles_when_the_run_is_payoff_times_the_compile_time(
    eager_run_s, compile_s, payoff, used
):
    choice = choose("auto", eager_run_s=eager_run_s, compile_s=compile_s, payoff=payoff)
    assert choice.used is used
    assert choice.reason.startswith(f"auto: estimated eager run {eager_run_s:.3g} s")
    assert (">=" if used else "<") in choice.reason


def test_on_and_off_override_the_estimate_and_a_missing_path_refuses_both():
    assert choose("on", eager_run_s=0.0, compile_s=1e9) == CompileChoice(
        True, "hypergradient.compile is 'on'"
    )
    assert choose("off", eager_run_s=1e9, compile_s=0.1).used is False
    refused = choose("on", refusal="no path")
    assert refused == CompileChoice(False, "no path")
    assert choose("auto").used is False  # nothing measured yet: no compiling


@pytest.mark.parametrize(
    ("method", "words"),
    [
        ({"method": "forward"}, "hypergradient.method='forward' has no compiled path"),
        ({"method": "implicit"}, "hypergradient.method='implicit' has no compiled path"),
        ({"method": "soba"}, "single-loop"),
        ({"method": "saba"}, "single-loop"),
        ({"method": "f2sa"}, "single-loop"),
    ],
)
def test_every_method_without_a_compiled_path_says_why(method, words):
    spec = tiny_spec()
    spec["hypergradient"] = method
    spec["diagnostics"]["every"] = 0
    reason = compile_refusal(parse_spec(spec), graphed=False)
    assert reason is not None and words in reason
    assert build(parse_spec(spec)).notes["compile"] == {
        "used": False,
        "seconds": 0.0,
        "reason": reason,
    }


def test_graphed_hypergradients_and_minibatch_steps_are_not_compiled():
    spec = parse_spec(tiny_spec())
    assert compile_refusal(spec, graphed=False) is None
    assert "CUDA graphs" in compile_refusal(spec, graphed=True)
    batched = copy.deepcopy(example("hypercleaning"))
    batched["inner"]["batch_size"] = 50
    assert "inner.batch_size=50" in compile_refusal(parse_spec(batched), graphed=False)


def test_compile_times_round_trip_and_a_broken_file_reads_as_empty(tmp_path):
    times = CompileTimes(tmp_path / "sub" / "compile-times.json")
    assert times.get("k") is None
    times.put("k", 12.3456)
    times.put("j", 1.0)
    assert (times.get("k"), times.get("j")) == (12.346, 1.0)
    times.path.write_text("{not json")
    assert times.get("k") is None


def _auto(spec_over: dict | None = None, **kwargs) -> tuple[AutoCompiled, core.BilevelProblem]:
    spec = tiny_spec(**(spec_over or {}))
    spec["diagnostics"]["every"] = 0
    built = build(parse_spec(spec), compile_options=CompileOptions(**kwargs))
    assert isinstance(built.compiled, AutoCompiled)
    return built.compiled, built


def test_a_short_job_stays_eager_after_its_first_measured_hypergradient():
    auto, built = _auto(prior_s=1e6)
    assert auto.choice is None
    auto(built.problem, built.hparams, built.dynamics)
    assert auto.choice is not None and auto.choice.used is False
    assert auto.compiled is None and auto.meters_saved_tensors
    assert built.notes["compile"]["reason"].startswith("auto: estimated eager run")


def test_a_long_job_compiles_from_its_second_hypergradient(tmp_path):
    auto, built = _auto(times=CompileTimes(tmp_path / "t.json"), prior_s=1e-9)
    auto.iterations = 10**9
    eager = auto(built.problem, built.hparams, built.dynamics)
    assert auto.choice is not None and auto.choice.used
    assert isinstance(auto.compiled, core.Compiled)  # built, not compiled yet
    assert not auto.meters_saved_tensors
    assert "compiled" not in eager.info  # the measured call itself ran eagerly


def test_the_known_compile_time_of_the_same_shapes_is_used(tmp_path):
    times = CompileTimes(tmp_path / "t.json")
    auto, built = _auto(times=times, prior_s=1e-9)
    times.put(
        compile_key(auto.spec, built.problem, built.hparams, built.dynamics, auto.estimator), 1e9
    )  # far too slow
    auto.iterations = 10**6
    auto(built.problem, built.hparams, built.dynamics)
    assert auto.choice is not None and not auto.choice.used
    assert "compile time 1e+09 s" in auto.choice.reason


def test_a_resumed_job_keeps_its_earlier_choice_without_measuring():
    auto, _ = _auto(prior_s=1e6)
    auto.resume({"used": True, "seconds": 3.0, "reason": "auto: earlier"})
    assert auto.choice == CompileChoice(True, "auto: earlier")
    assert isinstance(auto.compiled, core.Compiled)
    assert auto.notes["compile"]["used"] is True


def test_an_attempt_killed_before_its_first_measure_leaves_auto_to_decide():
    auto, _ = _auto(prior_s=1e6)
    undecided = dict(auto.notes["compile"])
    assert undecided["used"] is False
    auto.resume(undecided)
    assert auto.choice is None


def test_the_key_names_the_kind_method_unrolled_graph_and_shapes():
    def key(**over):
        spec = parse_spec(tiny_spec(**over))
        built = build(spec)
        assert isinstance(built.compiled, AutoCompiled)
        return compile_key(spec, built.problem, built.hparams, built.dynamics,
                           built.compiled.estimator)  # fmt: skip

    truncated = key()
    assert truncated.startswith("toy|truncated|T=10,K=3,")  # Prior's family: kind|method
    assert "(2,):torch.float64:cpu" in truncated
    # K=1, 5 and 25 record 1, 5 and 25 steps: each its own speed-up, not one for all
    ks = {key(steps=30, hypergradient={"method": "truncated", "K": k}) for k in (1, 5, 25)}
    assert len(ks) == 3 and all("T=30," in k for k in ks)
    assert key(steps=20) != truncated  # T too
    assert key(hypergradient={"method": "full"}).startswith("toy|full|T=10|")


def test_an_old_key_without_its_graph_matches_no_job_and_only_lends_a_prior(tmp_path):
    times = CompileTimes(tmp_path / "t.json")
    auto, built = _auto(times=times, prior_s=1e6)
    key = compile_key(auto.spec, built.problem, built.hparams, built.dynamics, auto.estimator)
    kind, method, _graph, shapes = key.split("|")
    times.put(f"{kind}|{method}|{shapes}", 1e-3, speedup=3.0)  # as an older worker wrote it
    assert times.speedup(key) is None and not times.known(key)
    prior = times.prior(key)
    assert prior is not None and prior.scope == "kind|method"


@pytest.mark.parametrize(
    ("eager_run_s", "speedup", "compile_s", "used"),
    [
        (10.0, 2.0, 5.0, True),  # compiled 5 s + compile 5 s = the eager run: it pays
        (10.0, 2.0, 5.1, False),
        (1.0, 3.0, 0.5, True),  # a short job compiles when the compile is cheap
        (1e6, 0.9, 0.0, False),  # compiling that slows the step never pays
    ],
)
def test_a_measured_speedup_weighs_the_compiled_run_against_the_eager_one(
    eager_run_s, speedup, compile_s, used
):
    choice = choose(
        "auto", eager_run_s=eager_run_s, compile_s=compile_s, speedup=speedup, cache="disk"
    )
    assert choice.used is used
    assert f"compiled run {eager_run_s / speedup:.3g} s" in choice.reason
    assert f"speed-up {speedup:.2f}x" in choice.reason and "disk cache" in choice.reason


def test_compile_times_keep_each_cache_and_fall_back_to_a_colder_one(tmp_path):
    times = CompileTimes(tmp_path / "t.json")
    assert not times.known("k") and times.speedup("k") is None
    times.put("k", 20.0)  # cold
    assert times.known("k") and times.get("k", "memory") == times.get("k", "disk") == 20.0
    times.put("k", 0.3, cache="disk")
    times.put("k", speedup=2.5)
    assert (times.get("k", "memory"), times.get("k", "disk"), times.get("k")) == (0.3, 0.3, 20.0)
    assert times.speedup("k") == 2.5
    times.path.write_text('{"old": 7.5}')  # an older worker's file: a number, a cold compile
    assert times.get("old", "disk") == 7.5 and times.speedup("old") is None


def test_the_process_keeps_its_compiled_code_for_the_same_key_only(monkeypatch):
    resets = []
    monkeypatch.setattr(torch.compiler, "reset", lambda: resets.append(1))
    monkeypatch.setattr(compile_cache, "_RESIDENT", compile_cache._Resident())
    assert keep_compiled_for("a") == "reset" and compile_cache.resident_key() == "a"
    assert keep_compiled_for("a") == "memory"
    assert keep_compiled_for("b") == "reset" and len(resets) == 2
    # variants near torch.compile's limit: dropped before it would silently run eagerly
    compile_cache.note_graphs(int(torch._dynamo.config.recompile_limit))
    assert keep_compiled_for("b") == "reset"


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_a_second_job_of_the_same_key_finds_its_code_in_memory_and_says_so(tmp_path):
    times = CompileTimes(tmp_path / "t.json")
    summaries = []
    for _ in range(2):
        auto, built = _auto(times=times, prior_s=1e-9)
        auto.iterations = 10**9
        for _ in range(3):  # eager (measured), compiled (compiles), compiled (speed-up)
            auto(built.problem, built.hparams, built.dynamics)
        summaries.append(built.notes["compile"])
        key = compile_key(auto.spec, built.problem, built.hparams, built.dynamics, auto.estimator)
        assert times.speedup(key) is not None  # measured by the job's third call
        times.put(key, speedup=2.0)  # the toy's own is noise: a step of microseconds
    first, second = summaries
    assert first["used"] and first["cache"] in ("disk", "cold")
    assert second["used"] and second["cache"] == "memory"
    assert times.get(key, "memory") is not None
    assert "measured here" in second["reason"]  # the second job used the measured speed-up


def test_before_its_key_is_measured_auto_uses_the_median_speedup_of_other_keys():
    # a 10 s eager run, a 4 s compile: 10 < 10 x 4 under the built-in prior, but at the
    # median 2x of the other keys the compiled run is 5 s, and 5 + 4 <= 10
    prior = Prior(speedups=(1.5, 2.0, 3.0), compile_s=4.0, scope="kind|method", keys=3)
    assert not choose("auto", eager_run_s=10.0, compile_s=4.0).used
    choice = choose("auto", eager_run_s=10.0, compile_s=4.0, prior=prior, cache="cold")
    assert choice.used
    assert (
        "compiled run 5 s (speed-up 2.00x prior: median measured on 3 other key(s) of this "
        "kind and method) + compile time 4 s, cold cache"
    ) in choice.reason
    slow = Prior(speedups=(1.1, 1.2, 5.0), compile_s=4.0, scope="any", keys=3)
    choice = choose("auto", eager_run_s=10.0, compile_s=4.0, prior=slow)
    assert not choice.used and "speed-up 1.20x prior" in choice.reason
    assert "of any kind" in choice.reason
    # the key's own measurement wins over the prior
    own = choose("auto", eager_run_s=10.0, compile_s=4.0, speedup=1.1, prior=prior)
    assert not own.used and "measured here" in own.reason and "prior" not in own.reason
    # nothing measured anywhere: the built-in prior, and the reason says so
    assert "built-in prior" in choose("auto", eager_run_s=10.0, compile_s=4.0).reason


def test_the_prior_comes_from_the_same_kind_and_method_first_then_any_key(tmp_path):
    times = CompileTimes(tmp_path / "t.json")
    assert times.prior("toy|full|(3,)") is None
    times.put("toy|full|(3,)", 9.0, speedup=2.0)  # the key itself never counts
    assert times.prior("toy|full|(3,)") is None
    times.put("mnist|full|(7,)", 20.0, speedup=1.5)
    assert times.prior("toy|full|(3,)") == Prior((1.5,), 20.0, "any", 1)
    times.put("toy|full|(5,)", 3.0, speedup=2.5)
    times.put("toy|full|(6,)", 4.0, speedup=3.0)
    times.put("toy|full|(8,)", 50.0)  # timed, not yet measured: no speed-up to lend
    prior = times.prior("toy|full|(9,)")
    assert prior is not None and prior.scope == "kind|method"
    assert sorted(prior.speedups) == [2.0, 2.5, 3.0] and prior.compile_s == 9.0
    anywhere = times.prior("toy|truncated|(3,)")
    assert anywhere is not None and (anywhere.scope, anywhere.keys) == ("any", 4)
    assert sorted(anywhere.speedups) == [1.5, 2.0, 2.5, 3.0] and anywhere.compile_s == 20.0


def test_a_first_long_job_of_its_key_compiles_on_the_prior_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(compile_cache, "_RESIDENT", compile_cache._Resident())  # a new worker
    times = CompileTimes(tmp_path / "t.json")
    # without the prior: a compile assumed to take 1e6 s never pays
    auto, built = _auto(times=times, prior_s=1e6)
    key = compile_key(auto.spec, built.problem, built.hparams, built.dynamics, auto.estimator)
    family = "|".join(key.split("|")[:2])
    times.put(f"{family}|other shapes", 1e-3, speedup=3.0)
    auto.iterations = 10**6
    auto(built.problem, built.hparams, built.dynamics)
    assert auto.choice is not None and auto.choice.used
    reason = built.notes["compile"]["reason"]
    assert "speed-up 3.00x prior: median measured on 1 other key(s) of this kind" in reason
    assert "compile time 0.001 s, cold cache" in reason
