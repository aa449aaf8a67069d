"""Memory, counted deterministically as bytes held for backward (saved-tensor hooks)."""

from __future__ import annotations

import torch

import core

from .helpers import F64, Logistic

D = 128
PROBLEM = Logistic(n=16, d=D)
LAM = torch.full((D,), -1.0, dtype=F64)
STATE_BYTES = D * 8  # one float64 copy of w


def held(estimator, T: int) -> tuple[int, int]:
    """(peak bytes saved for backward, bytes of states the estimator stored itself)."""
    with core.SavedTensorMeter() as meter:
        res = core.hypergradient(PROBLEM, LAM, core.GradientDescent(T, lr=0.5), estimator)
    assert meter.current == 0, "every graph was freed by the end"
    return meter.peak, res.info["stored_bytes"]


def total(estimator, T: int) -> int:
    return sum(held(estimator, T))


def test_meter_counts_saved_tensors_and_their_release():
    with core.SavedTensorMeter() as meter:
        x = torch.ones(1000, dtype=F64, requires_grad=True)
        y = torch.sin(x)  # saves x: 8000 bytes
        assert meter.current == 8000
        z = (y * y).sum()  # saves y twice, counted once
        assert meter.current == 16000
        del y, z
    assert meter.current == 0 and meter.peak == 16000


def test_truncated_memory_is_independent_of_T_and_grows_with_K():
    for K in (1, 5, 10):
        assert len({held(core.Truncated(K), T) for T in (20, 80, 320)}) == 1
    peaks = [held(core.Truncated(K), 100)[0] for K in (1, 2, 5, 10)]
    assert peaks == sorted(peaks) and len(set(peaks)) == 4
    per_step = peaks[1] - peaks[0]
    assert peaks[3] - peaks[0] == 9 * per_step  # linear in K


def test_truncated_iterates_mode_holds_K_states_plus_one_step():
    one_step, _ = held(core.Truncated(1), 100)
    for K in (1, 5, 20):
        for T in (40, 160):
            saved, stored = held(core.Truncated(K, store="iterates"), T)
            assert saved == one_step  # only one step's graph at any time
            assert stored == K * STATE_BYTES  # the iterates w_{T-K} .. w_{T-1}


def test_full_memory_grows_linearly_with_T():
    p16, p64, p256 = (total(core.Full(), T) for T in (16, 64, 256))
    assert p256 - p64 == 4 * (p64 - p16) > 0


def test_checkpointed_memory_grows_like_sqrt_T():
    base = total(core.Truncated(1), 16)
    full = [total(core.Full(), T) - base for T in (64, 256)]
    ckpt = [total(core.Checkpointed(), T) - base for T in (64, 256)]
    assert 3.5 < full[1] / full[0] < 4.5  # linear: T x4 -> memory x4
    assert 1.6 < ckpt[1] / ckpt[0] < 2.4  # sqrt(T): T x4 -> memory x2
    assert ckpt[1] < full[1] / 4
