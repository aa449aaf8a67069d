"""core.Compiled: compiled inner steps give the eager estimators' hypergradients.

The oracle is a hand-written autograd loop (no graph for the steps K-RMD drops,
``create_graph`` for the last K, one backward), on a problem without ``inner_grad``: the
generic path every user model takes. The first compilation costs seconds; the tests share
one problem class so that the compiled kernels are reused.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import core

from .helpers import rel_err

T = 8

# torch.compile's own internals warn about torch.jit; nothing of ours to act on
pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"
)


class Softmax(core.BilevelProblem):
    """Weighted softmax regression without ``inner_grad``: ``∇_W g`` comes from autograd."""

    def __init__(self, n=24, d=5, classes=3, seed=0, dtype=torch.float64):
        gen = torch.Generator().manual_seed(seed)
        self.X = torch.randn(n, d, generator=gen, dtype=dtype)
        self.y = torch.randint(0, classes, (n,), generator=gen)
        self.Xv = torch.randn(n, d, generator=gen, dtype=dtype)
        self.yv = torch.randint(0, classes, (n,), generator=gen)
        self.shape = (classes, d)

    def init(self, hparams):
        return torch.zeros(self.shape, dtype=hparams.dtype)

    def inner_loss(self, params, hparams):
        ce = F.cross_entropy(self.X @ params.T, self.y, reduction="none")
        return torch.mean(torch.sigmoid(hparams) * ce) + 1e-3 * torch.sum(params**2)

    def outer_loss(self, params, hparams):
        return F.cross_entropy(self.Xv @ params.T, self.yv)


class Minibatched(Softmax):
    """The same problem seeing a different half of the rows at each step."""

    def at_step(self, t):
        view = Softmax.__new__(Softmax)
        view.__dict__.update(self.__dict__)
        rows = slice(0, 12) if t % 2 else slice(12, 24)
        view.X, view.y = self.X[rows], self.y[rows]
        view.inner_loss = lambda w, lam: Softmax.inner_loss(view, w, lam[rows])
        return view


def plain_autograd(problem, lam, K, lr=0.5):
    """The hand-written K-RMD loop (Eq. 8); ``K = T`` is full RMD, as ``init`` ignores λ."""
    lam = lam.detach().requires_grad_(True)
    w = problem.init(lam.detach())
    for t in range(T - K):
        w = w.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(problem.at_step(t).inner_loss(w, lam.detach()), w)
        w = (w - lr * g).detach()
    w = w.requires_grad_(True)
    for t in range(T - K, T):
        (g,) = torch.autograd.grad(problem.at_step(t).inner_loss(w, lam), w, create_graph=True)
        w = w - lr * g
    (h,) = torch.autograd.grad(problem.outer_loss(w, lam), lam)
    return h


def _lam(n=24, dtype=torch.float64):
    return torch.linspace(-1.0, 1.0, n, dtype=dtype)


DYN = core.GradientDescent(steps=T, lr=0.5)


@pytest.mark.parametrize(
    ("make", "K"),
    [
        (core.Full, T),
        (lambda: core.Truncated(K=1), 1),
        (lambda: core.Truncated(K=3), 3),
        (lambda: core.Truncated(K=T), T),
        (lambda: core.Truncated(K=3, store="iterates"), 3),
        (lambda: core.Checkpointed(segment=3), T),
    ],
    ids=["full", "K=1", "K=3", "K=T", "K=3 iterates", "checkpointed"],
)
def test_generic_path_eager_and_compiled_equal_plain_autograd_in_float64(make, K):
    problem, lam = Softmax(), _lam()
    expected = plain_autograd(problem, lam, K)
    eager = core.hypergradient(problem, lam, DYN, make())
    compiled = core.hypergradient(problem, lam, DYN, core.Compiled(make()))
    assert rel_err(eager.grad, expected) < 1e-12
    assert rel_err(compiled.grad, expected) < 1e-12
    assert compiled.info["method"] == eager.info["method"]
    assert compiled.info["compiled"] is True and compiled.info["compiled_steps"] >= T
    assert torch.allclose(compiled.params, eager.params, rtol=1e-12, atol=1e-14)


def test_compiled_equals_eager_in_float32_and_reports_its_compile_time():
    problem, lam = Softmax(dtype=torch.float32), _lam(dtype=torch.float32)
    est = core.Compiled(core.Truncated(K=3))
    first = core.hypergradient(problem, lam, DYN, est)
    again = core.hypergradient(problem, lam, DYN, est)
    eager = core.hypergradient(problem, lam, DYN, core.Truncated(K=3))
    assert first.grad.dtype == torch.float32
    assert rel_err(first.grad, eager.grad) < 1e-5  # a fused kernel sums in another order
    assert torch.equal(first.grad, again.grad)
    assert first.info["compile_s"] > 0 and again.info["compile_s"] == 0
    assert est.compile_s == first.info["compile_s"]


def test_another_problem_of_the_same_kind_reads_its_own_data():
    est = core.Compiled(core.Truncated(K=3))
    for seed in (1, 2):
        problem, lam = Softmax(seed=seed), _lam()
        got = core.hypergradient(problem, lam, DYN, est)
        assert rel_err(got.grad, plain_autograd(problem, lam, 3)) < 1e-12


def test_steps_that_see_another_batch_run_eagerly_and_stay_exact():
    problem, lam = Minibatched(), _lam()
    got = core.hypergradient(problem, lam, DYN, core.Compiled(core.Truncated(K=3)))
    assert rel_err(got.grad, plain_autograd(problem, lam, 3)) < 1e-12
    assert got.info["compiled_steps"] == 0


def test_learned_step_size_and_momentum_compile_too():
    from .helpers import LearnedLrToy

    problem = LearnedLrToy()
    dyn = core.GradientDescent(steps=T, lr=0.1, momentum=0.5, lr_key="log_lr")
    for est in (core.Full(), core.Truncated(K=3)):
        eager = core.hypergradient(problem, problem.hparams(), dyn, est)
        compiled = core.hypergradient(problem, problem.hparams(), dyn, core.Compiled(est))
        assert rel_err(compiled.grad, eager.grad) < 1e-12


def test_metered_compiled_reports_no_cpu_peak_rather_than_a_wrong_one():
    problem, lam = Softmax(), _lam()
    res = core.hypergradient(problem, lam, DYN, core.Metered(core.Compiled(core.Full())))
    assert "peak_bytes" not in res.info
    assert rel_err(res.grad, plain_autograd(problem, lam, T)) < 1e-12


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: core.Compiled(core.Forward()), "got Forward"),
        (lambda: core.Compiled(core.Full(), mode="fastest"), "got 'fastest'"),
    ],
)
def test_bad_arguments_name_the_value(make, message):
    with pytest.raises(core.ConfigurationError, match=message):
        make()


def test_a_tall_skinny_product_is_computed_as_its_transpose_and_others_are_kept():
    from torch.fx.experimental.proxy_tensor import make_fx

    from core.estimators._skinny import SkinnyProducts

    mm, permute = torch.ops.aten.mm.default, torch.ops.aten.permute.default
    X, W = torch.randn(500, 30, dtype=torch.float64), torch.randn(10, 30, dtype=torch.float64)
    R = torch.randn(500, 10, dtype=torch.float64)

    def step(x, w, r):
        # the data times the weights' transpose (500 x 10: rewritten), then R^T X (10 x 30)
        return torch.mm(x, w.t()) * 2.0, torch.mm(r.t(), x)

    gm = make_fx(step, tracing_mode="fake")(X, W, R)
    SkinnyProducts()(gm.graph)
    gm.recompile()
    products = [n for n in gm.graph.nodes if n.target is mm]
    assert len(products) == 2
    tall = products[0]  # mm(wᵀᵀ, xᵀ): the 10 x 500 product, then its transpose
    assert [tuple(a.meta["val"].shape) for a in tall.args] == [(10, 30), (30, 500)]
    assert [u.target for u in tall.users] == [permute]
    assert [tuple(a.meta["val"].shape) for a in products[1].args] == [(10, 500), (500, 30)]
    got, ref = gm(X, W, R), step(X, W, R)
    assert all(torch.allclose(g, r, rtol=1e-12, atol=0) for g, r in zip(got, ref))
