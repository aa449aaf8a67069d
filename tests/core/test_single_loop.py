"""Single-loop methods (SOBA, SABA, F2SA): convergence to a known solution, exact resume."""

from __future__ import annotations

import io

import pytest
import torch

import core
from core.problems import QuadraticPair

# one inner and one outer batch: the deterministic pair, where SOBA and F2SA with constant
# steps converge to the solution (SOBA exactly, F2SA up to its O(1/σ_max) penalty bias)
SINGLE = {"n_inner": 1, "n_outer": 1}
# what each method is run on, with steps it is stable with, and for how long
CASES = {
    "soba": (SINGLE, core.SOBA(inner_lr=0.3, outer_lr=0.1), 1500),
    "saba": ({"n_inner": 8, "n_outer": 4}, core.SABA(inner_lr=0.1, outer_lr=0.03), 5000),
    "f2sa": (
        SINGLE,
        core.F2SA(inner_lr=0.3, outer_lr=0.05, penalty_growth=100.0, penalty_max=1e5),
        2500,
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_method_converges_to_the_known_solution_of_the_quadratic_pair(name):
    sizes, method, iterations = CASES[name]
    p = QuadraticPair(**sizes)
    lam_star, w_star = p.solution()
    out = core.fit_single_loop(p, p.initial_hparams(), method, iterations=iterations)
    assert float((out.hparams - lam_star).norm()) < 1e-4
    w = core.single_loop.inner_params(out.state, p)
    assert float((w - w_star).norm()) < 1e-4


def test_the_known_solution_is_a_stationary_point_of_the_implicit_hypergradient():
    # the oracle itself, checked: at λ* the hypergradient of Eq. (11) vanishes
    p = QuadraticPair(n_inner=5, n_outer=3)
    lam_star, w_star = p.solution()
    res = core.hypergradient(p, lam_star, core.GradientDescent(steps=400, lr=0.4), core.Implicit())
    assert float(res.grad.norm()) < 1e-8
    assert float((res.params - w_star).norm()) < 1e-8


def test_saba_beats_soba_with_the_same_constant_steps_on_batches():
    # variance reduction: with constant steps SOBA stalls at its noise floor, SABA does not
    p = QuadraticPair(n_inner=8, n_outer=4)
    lam_star, _ = p.solution()
    dist = {}
    for method in (core.SOBA(inner_lr=0.1, outer_lr=0.03), core.SABA(inner_lr=0.1, outer_lr=0.03)):
        out = core.fit_single_loop(p, p.initial_hparams(), method, iterations=3000)
        dist[method.name] = float((out.hparams - lam_star).norm())
    assert dist["saba"] < 1e-6 < dist["soba"]


def test_saba_running_means_equal_the_mean_of_its_memory():
    p = QuadraticPair(n_inner=4, n_outer=3)
    out = core.fit_single_loop(p, p.initial_hparams(), core.SABA(), iterations=37)
    st = out.state.extra["state"]
    for key in ("g_w", "hv", "jv", "f_w", "f_lam"):
        mem = torch.stack([m[0] for m in st["mem_" + key]])
        torch.testing.assert_close(st["avg_" + key][0], mem.mean(0), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", sorted(CASES))
def test_resumed_run_is_bit_identical_to_the_uninterrupted_one(name):
    _, method, _ = CASES[name]
    p = QuadraticPair(n_inner=5, n_outer=3)
    whole = core.fit_single_loop(p, p.initial_hparams(), method, iterations=60)
    half = core.fit_single_loop(p, p.initial_hparams(), method, iterations=25)
    buf = io.BytesIO()
    torch.save(half.state.state_dict(), buf)
    buf.seek(0)
    saved = core.FitState.from_state_dict(torch.load(buf, weights_only=True))
    rest = core.fit_single_loop(p, p.initial_hparams(), method, iterations=60, state=saved)
    assert torch.equal(rest.hparams, whole.hparams)
    assert torch.equal(rest.state.extra["state"]["w"][0], whole.state.extra["state"]["w"][0])
    assert rest.history["outer_loss"] == whole.history["outer_loss"]


def test_handed_out_states_are_not_changed_by_later_steps():
    # the service serialises a checkpoint on another thread while the run goes on
    p = QuadraticPair(n_inner=4, n_outer=2)
    states = []
    core.fit_single_loop(
        p, p.initial_hparams(), core.SABA(), iterations=5,
        callback=lambda rec, st: states.append((st, st.hparams.clone())),
    )  # fmt: skip
    first, lam1 = states[0]
    assert torch.equal(first.hparams, lam1)
    assert first.iteration == 1


def test_batches_are_drawn_once_per_epoch():
    p = QuadraticPair(n_inner=7)
    drawn = [core.single_loop._oracle.draw(p, "inner", 3, k) for k in range(1, 15)]
    assert sorted(drawn[:7]) == list(range(7)) == sorted(drawn[7:])


def test_resuming_with_another_methods_state_is_refused():
    p = QuadraticPair()
    out = core.fit_single_loop(p, p.initial_hparams(), core.SOBA(), iterations=2)
    with pytest.raises(core.ConfigurationError, match="state is of method 'soba', not 'saba'"):
        core.fit_single_loop(p, p.initial_hparams(), core.SABA(), iterations=3, state=out.state)


def test_divergence_names_the_step():
    p = QuadraticPair(n_inner=1, n_outer=1, L=2.0)
    with pytest.raises(core.DivergenceError) as err:
        core.fit_single_loop(p, p.initial_hparams(), core.SOBA(inner_lr=50.0), iterations=500)
    assert err.value.iteration is not None and err.value.iteration <= 500


@pytest.mark.parametrize(
    ("method", "options", "message"),
    [
        ("sobba", {}, "method must be one of \\['f2sa', 'saba', 'soba'\\], got 'sobba'"),
        ("soba", {"inner_lr": 0.0}, "inner_lr"),
        ("soba", {"schedule": "cosine"}, "schedule must be one of"),
        ("f2sa", {"penalty": 0.5}, "penalty must be in \\[1, penalty_max=10000.0\\], got 0.5"),
        ("saba", {"K": 3}, "bad options"),
    ],
)
def test_bad_method_options_are_named(method, options, message):
    with pytest.raises(core.ConfigurationError, match=message):
        core.make_single_loop(method, **options)


def test_f2sa_bias_shrinks_as_one_over_the_penalty():
    # the penalty value function's gradient is within O(1/σ) of the hypergradient: with a
    # fixed σ the fixed point's distance to λ* falls tenfold when σ grows tenfold
    p = QuadraticPair(**SINGLE)
    lam_star, _ = p.solution()
    dist = []
    for sigma in (100.0, 1000.0):
        method = core.F2SA(inner_lr=0.3, outer_lr=0.05, penalty=sigma, penalty_max=sigma)
        out = core.fit_single_loop(p, p.initial_hparams(), method, iterations=1500)
        dist.append(float((out.hparams - lam_star).norm()))
    assert dist[1] > 1e-6  # a real bias, not rounding
    assert dist[0] / dist[1] == pytest.approx(10.0, rel=0.05)
