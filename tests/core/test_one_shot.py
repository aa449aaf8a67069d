"""One-shot problem (Section 4.3): exact hypergradients, vectorised tasks, task sampling."""

from __future__ import annotations

import pytest
import torch

import core
from core.problems.one_shot import OneShot, evaluate

from .helpers import F64

T = 3
DYN = core.GradientDescent(steps=T, lr=0.1, lr_key="log_lr")


def tiny(meta_batch: int = 2, regularize: bool = True, seed: int = 0) -> OneShot:
    """8 classes of 16x16 random images, width 3, 2 queries per class, float64."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(8, 20, 16, 16, generator=gen, dtype=F64)
    p = OneShot(images, queries=2, meta_batch=meta_batch, width=3, regularize=regularize, dtype=F64)
    p.set_batch(p.sample(torch.Generator().manual_seed(seed + 1)))
    return p


def hparams(p: OneShot) -> dict:
    """Initial λ moved off its symmetric start (zero offsets and classifier centre)."""
    hp = p.initial_hparams(seed=3, rho=0.5)
    gen = torch.Generator().manual_seed(4)
    return {k: v + 0.1 * torch.randn(v.shape, generator=gen, dtype=F64) for k, v in hp.items()}


def directional_fd(p, hp, directions, eps=1e-5):
    """Central differences of ``f(w_T(λ), λ)`` along each direction."""

    def f(lam):
        return core.hypergradient(p, lam, DYN, core.Truncated(K=1)).outer_loss

    return torch.tensor(
        [
            (f({k: hp[k] + eps * d[k] for k in hp}) - f({k: hp[k] - eps * d[k] for k in hp}))
            / (2 * eps)
            for d in directions
        ],
        dtype=F64,
    )


def random_directions(hp, n=3, seed=5):
    gen = torch.Generator().manual_seed(seed)
    return [
        {k: torch.randn(v.shape, generator=gen, dtype=F64) for k, v in hp.items()} for _ in range(n)
    ]


def project(grad, directions):
    return torch.stack([sum((grad[k] * d[k]).sum() for k in grad) for d in directions])


@pytest.mark.parametrize(
    "estimator",
    [core.Full(), core.Checkpointed(), core.Checkpointed(segment=1), core.Forward()],
    ids=repr,
)
def test_exact_estimators_match_finite_differences(estimator):
    p = tiny()
    hp = hparams(p)
    dirs = random_directions(hp)
    res = core.hypergradient(p, hp, DYN, estimator)
    got, fd = project(res.grad, dirs), directional_fd(p, hp, dirs)
    assert float((got - fd).norm() / fd.norm()) < 1e-6
    for key in ("conv1", "conv2", "c_conv3", "rho", "log_lr"):  # every kind is differentiated
        assert float(res.grad[key].norm()) > 0


def test_truncated_with_K_equal_T_misses_only_the_init_term():
    """``w_0 = c``: full RMD adds ``B_0 α_0``, which touches the centres ``c_j`` only."""
    p = tiny()
    hp = hparams(p)
    full = core.hypergradient(p, hp, DYN, core.Full()).grad
    trunc = core.hypergradient(p, hp, DYN, core.Truncated(K=T)).grad
    for k in hp:
        diff = float((full[k] - trunc[k]).norm())
        if k.startswith("c_"):
            assert diff > 1e-8
        else:
            assert diff < 1e-12 * max(1.0, float(full[k].norm()))


def test_meta_batch_is_one_vectorised_computation_equal_to_tasks_one_at_a_time():
    p = tiny(meta_batch=3)
    hp = hparams(p)
    batch = p.batch
    together = core.hypergradient(p, hp, DYN, core.Full())
    singles = []
    for i in range(3):
        q = tiny(meta_batch=1)
        q.set_batch(batch.task(i))
        singles.append(core.hypergradient(q, hp, DYN, core.Full()))
    mean_loss = sum(r.outer_loss for r in singles) / 3
    assert together.outer_loss == pytest.approx(mean_loss, rel=1e-12)
    for k in hp:
        mean_grad = sum(r.grad[k] for r in singles) / 3
        torch.testing.assert_close(together.grad[k], mean_grad, rtol=1e-9, atol=1e-12)
    for k in together.params:  # w_T of task i is the one it reaches alone
        stacked = torch.cat([r.params[k] for r in singles])
        torch.testing.assert_close(together.params[k], stacked, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    "estimator",
    [
        core.Full(),
        core.Checkpointed(segment=1),
        core.Checkpointed(segment=2),
        core.Truncated(K=2),
        core.Truncated(K=2, store="iterates"),
        core.Implicit(iters=5, strict=False),
    ],
    ids=repr,
)
def test_cached_hyper_representation_changes_no_hypergradient(estimator, monkeypatch):
    """The support features are reused within a segment; replays must rebuild them."""
    p = tiny()
    hp = hparams(p)
    cached = core.hypergradient(p, hp, DYN, estimator)
    again = core.hypergradient(p, hp, DYN, estimator)  # same λ objects: cache from last call
    monkeypatch.setattr(p, "_hyper_cached", lambda params, lam, x: p._hyper(lam, x))
    plain = core.hypergradient(p, hp, DYN, estimator)
    for k in hp:
        torch.testing.assert_close(cached.grad[k], plain.grad[k], rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(again.grad[k], plain.grad[k], rtol=1e-12, atol=1e-14)


def test_without_regularisation_rho_gets_no_gradient_and_with_it_is_positive():
    p, q = tiny(regularize=False), tiny(regularize=True)
    hp = hparams(p)
    hp["rho"] = torch.tensor([-30.0, 0.0, 3.0], dtype=F64)  # softplus > 0 even far below 0
    assert float(core.hypergradient(p, hp, DYN, core.Full()).grad["rho"].abs().max()) == 0.0
    g = core.hypergradient(q, hp, DYN, core.Full()).grad["rho"]
    assert bool((g != 0).all())
    w = {k: v + 1.0 for k, v in q.init(hp).items()}
    assert float(q.inner_loss(w, hp)) > float(p.inner_loss(w, hp))


def test_init_is_the_centres_one_copy_per_task():
    p = tiny(meta_batch=3)
    hp = hparams(p)
    w0 = p.init(hp)
    assert set(w0) == {"conv3", "beta3", "conv4", "beta4", "fc_w", "fc_b"}
    for k, v in w0.items():
        assert v.shape == (3, *hp["c_" + k].shape)
        assert torch.equal(v[2], hp["c_" + k])


def test_sampling_is_seeded_and_builds_valid_tasks():
    # image (c, e) is the constant c * 20 + e, so every pixel says where it came from
    ids = torch.arange(8 * 20, dtype=F64).reshape(8, 20, 1, 1).expand(8, 20, 16, 16)
    p = OneShot(ids.clone(), queries=4, meta_batch=5, width=2, dtype=F64)
    a = p.sample(torch.Generator().manual_seed(7))
    b = p.sample(torch.Generator().manual_seed(7))
    c = p.sample(torch.Generator().manual_seed(8))
    assert torch.equal(a.support, b.support) and torch.equal(a.query, b.query)
    assert not torch.equal(a.support, c.support)
    assert a.support.shape == (5, 5, 1, 16, 16) and a.query.shape == (5, 20, 1, 16, 16)
    for t in range(5):
        s_id = a.support[t, :, 0, 0, 0].long()
        q_id = a.query[t, :, 0, 0, 0].long()
        s_cls, q_cls = s_id // 20, q_id // 20
        assert len(set(s_cls.tolist())) == 5  # five distinct characters
        for label in range(5):
            cls = s_cls[a.support_y[t] == label]
            assert (q_cls[a.query_y[t] == label] == cls).all()  # same character in Q
        assert not set(s_id.tolist()) & set(q_id.tolist())  # S and Q share no drawing
        assert len(set(q_id.tolist())) == 20


def test_paper_sized_network_has_75k_parameters_and_110k_hyperparameters():
    p = OneShot(torch.zeros(5, 20, 28, 28), meta_batch=1)
    assert p.n_params() == 74181  # "≈ 75k parameters" (App. G.3)
    assert sum(v.numel() for v in p.initial_hparams().values()) == 111753  # "≈ 110k"


def test_evaluate_adapts_every_task_and_restores_the_batch():
    p = tiny()
    hp = hparams(p)
    before = p.batch
    tasks = p.sample(torch.Generator().manual_seed(9), n_tasks=5)
    out = evaluate(p, hp, DYN, tasks, chunk=2)
    assert p.batch is before
    assert 0.0 <= out["query_accuracy"] <= 1.0 and out["query_loss"] > 0
    # the mean over chunks equals the mean over one batch of all tasks
    assert evaluate(p, hp, DYN, tasks, chunk=5)["query_loss"] == pytest.approx(out["query_loss"])


def test_bad_inputs_raise_configuration_errors():
    with pytest.raises(core.ConfigurationError, match="H >= 16"):
        OneShot(torch.zeros(8, 20, 8, 8))
    with pytest.raises(core.ConfigurationError, match="shots \\+ queries"):
        OneShot(torch.zeros(8, 20, 16, 16), queries=20)
    with pytest.raises(core.ConfigurationError, match="ways must be <= 4"):
        OneShot(torch.zeros(4, 20, 16, 16))
    p = OneShot(torch.zeros(8, 20, 16, 16), width=2)
    with pytest.raises(core.ConfigurationError, match="set_batch"):
        p.init(p.initial_hparams())
