"""Auto-K: the largest K whose graph fits a budget, and Prop. 3.1's bound for it."""

from __future__ import annotations

import pytest
import torch

import core
from core.problems.quadratic import Quadratic

F64 = torch.float64
MU, L, GAMMA, T = 0.2, 1.0, 0.5, 40
PROBLEM = Quadratic(dim=6, n_hparams=3, mu=MU, L=L)
LAM = torch.zeros(3, dtype=F64)
DYN = core.GradientDescent(steps=T, lr=GAMMA)


def _peak(K: int) -> int:
    res = core.Metered(core.Truncated(K))(PROBLEM, LAM, DYN)
    return int(res.info["peak_bytes"])


@pytest.mark.parametrize("k", [1, 4, 11])
def test_a_budget_that_fits_exactly_k_steps_chooses_k(k):
    base, step = core.step_bytes(PROBLEM, LAM, DYN)
    budget = base + k * step
    chosen = [core.choose_truncation(PROBLEM, LAM, DYN, b).K
              for b in (budget, budget + step - 1, budget + step)]  # fmt: skip
    assert chosen == [k, k, k + 1]


@pytest.mark.parametrize("k", [3, 9])
def test_the_chosen_K_really_fits_and_one_more_step_does_not(k):
    base, step = core.step_bytes(PROBLEM, LAM, DYN)
    choice = core.choose_truncation(PROBLEM, LAM, DYN, base + k * step)
    assert _peak(choice.K) <= choice.budget_bytes
    assert _peak(choice.K + 1) > choice.budget_bytes


def test_the_measured_contraction_is_one_minus_gamma_mu():
    base, step = core.step_bytes(PROBLEM, LAM, DYN)
    choice = core.choose_truncation(PROBLEM, LAM, DYN, base + 5 * step, iters=300)
    # A_t = I - γH: ||A_t|| = 1 - γμ for γ <= 1/L
    assert choice.contraction == pytest.approx(1 - GAMMA * MU, rel=1e-6)
    assert choice.alpha == pytest.approx(MU, rel=1e-4)
    # B_t = γΦ: its norm in closed form
    m_b = GAMMA * float(torch.linalg.matrix_norm(PROBLEM.Phi, 2))
    measured = choice.M_B
    assert measured == pytest.approx(m_b, rel=1e-6)


@pytest.mark.parametrize("k", [1, 3, 8, 20])
def test_the_recorded_bound_holds_against_the_exact_error(k):
    base, step = core.step_bytes(PROBLEM, LAM, DYN)
    choice = core.choose_truncation(PROBLEM, LAM, DYN, base + k * step, iters=300)
    h = core.Truncated(choice.K)(PROBLEM, LAM, DYN).grad
    exact = PROBLEM.exact_hypergradient(LAM, DYN)
    error = float((h - exact).norm())
    assert choice.bound is not None
    assert error <= choice.bound
    assert error > 0  # the bound is not vacuous: truncation is biased here


def test_full_rmd_when_all_T_steps_fit():
    base, step = core.step_bytes(PROBLEM, LAM, DYN)
    choice = core.choose_truncation(PROBLEM, LAM, DYN, base + 10 * T * step)
    assert choice.method == "full" and choice.K == T and choice.bound is None


def test_a_budget_below_one_step_names_what_one_step_needs():
    base, step = core.step_bytes(PROBLEM, LAM, DYN)
    with pytest.raises(core.ConfigurationError, match=f"K=1 needs {base + step} bytes"):
        core.choose_truncation(PROBLEM, LAM, DYN, base + step - 1)


def test_no_bound_where_the_unroll_does_not_contract():
    dyn = core.GradientDescent(steps=T, lr=2.5)  # γL = 2.5 > 2: ||A_t|| > 1
    base, step = core.step_bytes(PROBLEM, LAM, dyn)
    choice = core.choose_truncation(PROBLEM, LAM, dyn, base + 3 * step)
    assert choice.contraction > 1
    assert choice.alpha is None and choice.bound is None


def test_the_reason_names_the_bytes_the_budget_the_contraction_and_the_bound():
    base, step = core.step_bytes(PROBLEM, LAM, DYN)
    choice = core.choose_truncation(PROBLEM, LAM, DYN, base + 5 * step, iters=300)
    reason = choice.as_dict()["reason"]
    assert f"one recorded inner step holds {step:,} bytes on top of {base:,} fixed" in reason
    assert f"holds K=5 of the T={T} steps: K-RMD (Eq. 8)." in reason
    assert f"rho={choice.contraction:.4g} < 1" in reason
    assert f"bounds its bias by {choice.bound:.4g} (Eq. 10)" in reason


def test_the_reason_says_why_there_is_no_bound():
    base, step = core.step_bytes(PROBLEM, LAM, DYN)
    full = core.choose_truncation(PROBLEM, LAM, DYN, base + T * step)
    assert full.reason.endswith(f"holds all T={T} steps: full RMD (Eq. 6), which has no bias.")
    heavy = core.GradientDescent(steps=T, lr=GAMMA, momentum=0.5)
    base_h, step_h = core.step_bytes(PROBLEM, LAM, heavy)
    choice = core.choose_truncation(PROBLEM, LAM, heavy, base_h + 4 * step_h)
    assert choice.bound is None
    assert "No bias bound: with momentum 0.5" in choice.reason
    # γ = 3 > 2/L: the unroll expands, ρ = |1 - γL| = 2
    unstable = core.GradientDescent(steps=T, lr=3.0)
    base_u, step_u = core.step_bytes(PROBLEM, LAM, unstable)
    choice = core.choose_truncation(PROBLEM, LAM, unstable, base_u + 4 * step_u, iters=300)
    assert choice.contraction > 1
    assert "No bias bound: the last steps contract by rho=" in choice.reason
    assert ">= 1, so the dropped terms are not damped." in choice.reason
