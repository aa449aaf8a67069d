"""On a CUDA device: the estimators agree with the CPU in float64, and ``core.Graphed``'s
replayed hypergradient equals the eager one within float32 noise.

Marked ``gpu``: skipped, with the reason, where torch sees no CUDA device (CI, laptops).
"""

from __future__ import annotations

import pytest
import torch

import core
from core.problems import Quadratic
from core.problems.one_shot import OneShot

pytestmark = pytest.mark.gpu

ESTIMATORS = [core.Full(), core.Truncated(K=3), core.Forward(), core.Checkpointed(segment=4)]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=repr)
def test_cuda_float64_hypergradient_equals_the_cpu_one(estimator):
    dyn = core.GradientDescent(steps=20, lr=0.5)
    results = []
    for device in ("cpu", "cuda"):
        p = Quadratic(dim=16, n_hparams=4, seed=1, device=device)
        hp = torch.linspace(-1.0, 1.0, 4, dtype=torch.float64, device=device)
        results.append(core.hypergradient(p, hp, dyn, estimator))
    cpu, cuda = results
    assert cuda.grad.device.type == "cuda"
    assert _rel(cuda.grad.cpu(), cpu.grad) < 1e-10


@pytest.mark.parametrize("estimator", [core.Full(), core.Truncated(K=1)], ids=repr)
def test_graphed_replay_equals_eager_within_float32_noise(estimator):
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(8, 20, 16, 16, generator=gen)
    p = OneShot(images, queries=2, meta_batch=2, width=8, device="cuda")
    p.set_batch(p.sample(torch.Generator().manual_seed(1)))
    hp = p.initial_hparams(seed=3)
    dyn = core.GradientDescent(steps=5, lr=0.1, lr_key="log_lr")
    want = core.hypergradient(p, hp, dyn, estimator)
    again = core.hypergradient(p, hp, dyn, estimator)
    graphed = core.Graphed(estimator)
    got = core.hypergradient(p, hp, dyn, graphed)
    got = core.hypergradient(p, hp, dyn, graphed)  # the second call replays the graph
    assert got.info["graphed"] is True
    for k in want.grad:
        noise = _rel(again.grad[k], want.grad[k])
        assert _rel(got.grad[k], want.grad[k]) <= max(1e-4, 10 * noise), k


def test_metered_reports_the_cuda_allocator_peak_growing_with_K():
    # on a GPU the peak is the allocator's above what was allocated before the call: a
    # deeper truncation keeps more recorded steps, full RMD keeps all of them (Table 1)
    p = Quadratic(dim=4096, n_hparams=8, seed=0, device="cuda")
    hp = torch.zeros(8, dtype=torch.float64, device="cuda")
    dyn = core.GradientDescent(steps=40, lr=0.5)
    peaks = [core.Metered(est)(p, hp, dyn).info["peak_bytes"]
             for est in (core.Truncated(K=2), core.Truncated(K=20), core.Full())]  # fmt: skip
    assert 0 < peaks[0] < peaks[1] < peaks[2]
