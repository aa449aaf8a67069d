"""The supervised problems' fixed training batches, as the single-loop methods draw them."""

from __future__ import annotations

import torch

import core


def _problem(batch_size: int | None) -> core.problems.FeatureRegularization:
    gen = torch.Generator().manual_seed(0)
    arrays = {
        "x_train": torch.randn(60, 4, generator=gen, dtype=torch.float64),
        "y_train": torch.randn(60, generator=gen, dtype=torch.float64),
        "x_val": torch.randn(20, 4, generator=gen, dtype=torch.float64),
        "y_val": torch.randn(20, generator=gen, dtype=torch.float64),
    }
    data = core.problems.Splits.from_arrays(arrays, dtype=torch.float64)
    return core.problems.FeatureRegularization(data, model="linear", batch_size=batch_size, seed=3)


def test_the_inner_batches_partition_the_training_rows():
    problem = _problem(batch_size=15)
    assert (problem.n_batches("inner"), problem.n_batches("outer")) == (4, 1)
    rows = torch.cat([problem.on_batch("inner", i).rows for i in range(4)])
    assert sorted(rows.tolist()) == list(range(60))  # every row once
    assert problem.on_batch("outer", 0) is problem


def test_the_mean_of_equal_batches_is_the_full_inner_objective():
    # the unbiasedness SOBA and SABA rely on (core.BilevelProblem.on_batch)
    full, batched = _problem(None), _problem(15)
    lam = full.initial_hparams()
    w = full.init(lam) + torch.linspace(-1, 1, 5, dtype=torch.float64)
    mean = sum(batched.on_batch("inner", i).inner_loss(w, lam) for i in range(4)) / 4
    torch.testing.assert_close(mean, full.inner_loss(w, lam), rtol=1e-12, atol=1e-12)


def test_without_a_batch_size_there_is_one_batch():
    problem = _problem(None)
    assert problem.n_batches("inner") == 1 and problem.on_batch("inner", 0) is problem
