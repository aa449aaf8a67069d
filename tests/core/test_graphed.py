"""core.Graphed: what can be checked without a GPU.

A CUDA graph replays recorded kernels, so the recorded pass must never copy a value to the
host (``float``, ``item``, ``bool`` of a tensor): such a copy fails the capture. The tests
check that property of the reverse pass directly, by making those conversions raise. The
equality of replayed and eager results on CUDA is checked by
``ONE_SHOT_CHECK_ONLY=1 python3 benchmarks/library/one_shot_gpu.py`` on a GPU machine.
"""

from __future__ import annotations

import pytest
import torch

import core
from core.estimators._unroll import unrolled_tensors
from core.estimators.base import prepare
from core.problems.one_shot import TaskBatch

from .test_one_shot import DYN, hparams, tiny

REVERSE = [core.Full(), core.Truncated(K=1), core.Truncated(K=2, store="iterates"),
           core.Checkpointed(segment=2)]  # fmt: skip


@pytest.mark.parametrize("estimator", REVERSE, ids=lambda e: repr(e))
def test_on_the_cpu_graphed_is_the_estimator_itself(estimator):
    p = tiny()
    hp = hparams(p)
    want = core.hypergradient(p, hp, DYN, estimator)
    got = core.hypergradient(p, hp, DYN, core.Graphed(estimator))
    assert got.info["graphed"] is False
    assert got.outer_loss == want.outer_loss
    for k in want.grad:
        assert torch.equal(got.grad[k], want.grad[k]), k


@pytest.mark.parametrize("estimator", REVERSE, ids=lambda e: repr(e))
def test_the_reverse_pass_never_copies_a_value_to_the_host(estimator, monkeypatch):
    p = tiny()
    hp = hparams(p)
    setup = prepare(p, hp, DYN)

    def host_copy(self, *args, **kwargs):
        raise AssertionError("a host copy inside the recorded pass would break a CUDA graph")

    for name in ("__float__", "__bool__", "__int__", "item", "tolist"):
        monkeypatch.setattr(torch.Tensor, name, host_copy)
    h, loss, _, _ = unrolled_tensors(p, setup, DYN, estimator.plan(DYN.steps))
    monkeypatch.undo()
    want = core.hypergradient(p, hp, DYN, estimator)
    assert float(loss) == want.outer_loss
    got = setup.tree(h)
    for k in hp:
        assert torch.equal(got[k], want.grad[k]), k


def test_inputs_round_trip_and_a_new_batch_drops_cached_features():
    p = tiny()
    hp = hparams(p)
    first = core.hypergradient(p, hp, DYN, core.Truncated(K=1))
    batch = p.inputs()
    assert isinstance(TaskBatch(*batch), TaskBatch)
    other = p.sample(torch.Generator().manual_seed(7))
    p.set_inputs((other.support, other.support_y, other.query, other.query_y))
    moved = core.hypergradient(p, hp, DYN, core.Truncated(K=1))
    assert moved.outer_loss != first.outer_loss
    p.set_inputs(batch)
    again = core.hypergradient(p, hp, DYN, core.Truncated(K=1))
    assert again.outer_loss == first.outer_loss


def test_problems_without_inputs_refuse_to_set_some():
    p = core.problems.Toy()
    assert p.inputs() == ()
    p.set_inputs(())
    with pytest.raises(core.ConfigurationError, match="Toy has no inputs"):
        p.set_inputs((torch.zeros(1),))


def test_only_unrolled_reverse_estimators_can_be_graphed():
    with pytest.raises(core.ConfigurationError, match="got Implicit"):
        core.Graphed(core.Implicit())
    with pytest.raises(core.ConfigurationError, match="warmup must be an integer >= 1, got 0"):
        core.Graphed(core.Full(), warmup=0)
    assert core.Graphed(core.Full()).exact and not core.Graphed(core.Truncated(K=1)).exact
