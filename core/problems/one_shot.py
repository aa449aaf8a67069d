"""One-shot classification with a learned hyper-representation (Section 4.3, App. G.3).

Figure 8's network on ``size x size`` images (28 for Omniglot), every conv layer being
``conv 3x3 (width kernels, padding 1) -> max-pool 2x2 -> batch norm -> ReLU``::

    λ_{l1}, λ_{l2}: two conv layers, the hyper-representation, shared by every task
    w_3, w_4:       two conv layers, task-specific
    w_5:            a linear ways-way classifier, task-specific

The inner problem of one task with support set ``S`` (one example per class) is::

    g_S(w, λ) = Σ_{(x, y) ∈ S} CE(nn(x; w, λ), y) + Σ_{j=3}^{5} ρ_j ||w_j - c_j||²

with ``ρ_j = softplus(hparams["rho"][j])`` (positive), centres ``c_j`` and ``w_0 = c`` (so the
initialisation depends on ``λ`` and ``B_0 ≠ 0`` in Eq. 5). The outer loss is the mean
cross-entropy on the query set ``Q`` (15 examples per class). The inner step size is learned
through ``GradientDescent(lr_key="log_lr")``.

A meta-batch of ``B`` tasks is one computation: every inner parameter carries a leading task
dimension ``[B, ...]``; the task-specific convolutions are one grouped convolution
(``groups=B``) and the classifier one batched product. ``g`` is the *sum* of the tasks'
``g_S`` (so ``∇_{w[b]} g`` is task ``b``'s gradient alone) and ``f`` their *mean*.

Batch norm uses the statistics of the batch at hand, per task (support set in ``g``, query
set in ``f``; transductive, as in MAML), with a learned offset (TF's default
``center=True, scale=False``) and no running statistics. It is written out with ``mean`` and
``var`` so that autograd (double backward) and ``torch.func`` (``jvp``, ``vmap``, used by
:class:`core.Forward`) all apply. Conv layers have no bias: batch norm would cancel it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from core.dynamics import GradientDescent
from core.errors import ConfigurationError
from core.problem import BilevelProblem
from core.tree import unflatten
from core.validate import integer_at_least

__all__ = ["OneShot", "TaskBatch", "evaluate"]

HYPER_LAYERS = (("conv1", "beta1"), ("conv2", "beta2"))
# inner layer j -> its parameter names (w_j); the centre of w_j[name] is hparams["c_" + name]
INNER_LAYERS = (("conv3", "beta3"), ("conv4", "beta4"), ("fc_w", "fc_b"))
BN_EPS = 1e-3  # TF's batch_norm default

# Both w and λ are dicts of named tensors (layer names for w, "conv1"/"c_conv3"/... for λ).
Params = Mapping[str, Tensor]


@dataclass(frozen=True)
class TaskBatch:
    """A meta-batch of ``B`` few-shot tasks.

    Attributes:
        support: ``[B, ways*shots, 1, H, W]`` training images ``S``, class-major.
        support_y: ``[B, ways*shots]`` labels in ``0..ways-1``.
        query: ``[B, ways*queries, 1, H, W]`` validation images ``Q``.
        query_y: ``[B, ways*queries]`` labels.
    """

    support: Tensor
    support_y: Tensor
    query: Tensor
    query_y: Tensor

    @property
    def size(self) -> int:
        """The number of tasks ``B``."""
        return self.support.shape[0]

    def task(self, i: int | slice) -> TaskBatch:
        """Tasks ``i`` as a batch of their own (a slice, or one index kept as ``B = 1``)."""
        s = i if isinstance(i, slice) else slice(i, i + 1)
        return TaskBatch(self.support[s], self.support_y[s], self.query[s], self.query_y[s])


class OneShot(BilevelProblem[Params, Params]):
    """``ways``-way ``shots``-shot classification with a learned hyper-representation.

    Args:
        images: ``[n_classes, n_examples, H, W]`` images of one split (e.g.
            ``load_omniglot(d).split("train")``); ``H = W >= 16`` (four 2x2 poolings).
        ways: classes per task (5).
        shots: training examples per class (1).
        queries: validation examples per class (15).
        meta_batch: tasks per hyper-iteration ``B`` (4).
        width: kernels per conv layer (64).
        regularize: include ``Σ ρ_j ||w_j - c_j||²``; ``False`` is the ``ρ = 0`` model of
            Figure 7 (right).
        dtype, device: of the images and of :meth:`initial_hparams`.

    Raises:
        ConfigurationError: sizes out of range.

    Example:
        >>> import torch, core
        >>> p = OneShot(torch.rand(10, 20, 16, 16), width=4, meta_batch=2)
        >>> p.set_batch(p.sample(torch.Generator().manual_seed(0)))
        >>> dyn = core.GradientDescent(3, lr=0.1, lr_key="log_lr")
        >>> res = core.hypergradient(p, p.initial_hparams(), dyn, core.Truncated(K=1))
        >>> sorted(res.params)[:2], res.params["conv3"].shape[0]
        (['beta3', 'beta4'], 2)
    """

    def __init__(
        self,
        images: Tensor,
        *,
        ways: int = 5,
        shots: int = 1,
        queries: int = 15,
        meta_batch: int = 4,
        width: int = 64,
        regularize: bool = True,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ):
        if images.ndim != 4 or images.shape[2] != images.shape[3] or images.shape[2] < 16:
            raise ConfigurationError(
                f"images must be [classes, examples, H, H] with H >= 16, got {tuple(images.shape)}"
            )
        for name, v in (("ways", ways), ("shots", shots), ("queries", queries)):
            integer_at_least(v, name)
        if ways > images.shape[0]:
            raise ConfigurationError(f"ways must be <= {images.shape[0]} classes, got {ways}")
        if shots + queries > images.shape[1]:
            raise ConfigurationError(
                f"shots + queries must be <= {images.shape[1]} examples per class, "
                f"got {shots} + {queries}"
            )
        integer_at_least(meta_batch, "meta_batch")
        integer_at_least(width, "width")
        self.images = images.to(dtype=dtype, device=device)
        self.ways, self.shots, self.queries = ways, shots, queries
        self.meta_batch, self.width, self.regularize = meta_batch, width, regularize
        self.dtype, self.device = dtype, self.images.device
        side = images.shape[2]
        for _ in range(4):
            side //= 2
        self.features = width * side * side
        self.batch: TaskBatch | None = None
        # (the hyperparameter tensors and input, their versions, the features they gave)
        self._cache: tuple[tuple[Tensor, ...], tuple[Any, ...], Tensor] | None = None

    # -- tasks -----------------------------------------------------------------------------

    def sample(self, generator: torch.Generator, n_tasks: int | None = None) -> TaskBatch:
        """Draw ``n_tasks`` (default ``meta_batch``) tasks from ``generator``.

        Each task has ``ways`` distinct classes and ``shots + queries`` distinct examples of
        each, all drawn from ``generator`` (a CPU ``torch.Generator``), so a seed fixes the
        task sequence.
        """
        n = self.meta_batch if n_tasks is None else n_tasks
        n_classes, n_examples, H, W = self.images.shape
        classes = torch.rand(n, n_classes, generator=generator).argsort(1)[:, : self.ways]
        k = self.shots + self.queries
        examples = torch.rand(n, self.ways, n_examples, generator=generator).argsort(2)[..., :k]
        classes, examples = classes.to(self.device), examples.to(self.device)
        x = self.images[classes[..., None], examples]  # [n, ways, k, H, W]
        y = torch.arange(self.ways, device=self.device).expand(n, self.ways)

        def part(sl: slice) -> tuple[Tensor, Tensor]:
            xs = x[:, :, sl]
            ys = y[..., None].expand(*xs.shape[:3])
            return xs.reshape(n, -1, 1, H, W), ys.reshape(n, -1)

        support, support_y = part(slice(0, self.shots))
        query, query_y = part(slice(self.shots, k))
        return TaskBatch(support, support_y, query, query_y)

    def set_batch(self, batch: TaskBatch | None) -> None:
        """Make ``batch`` the current meta-batch (``None``: none); the losses read it."""
        self.batch = batch
        self._cache = None  # features of another batch's tensors must not come back

    def inputs(self) -> tuple[Tensor, ...]:
        """The current meta-batch's tensors (support, support_y, query, query_y)."""
        b = self._current()
        return (b.support, b.support_y, b.query, b.query_y)

    def set_inputs(self, tensors: tuple[Tensor, ...]) -> None:
        """Make ``TaskBatch(*tensors)`` the current meta-batch."""
        self.set_batch(TaskBatch(*tensors))

    def _current(self) -> TaskBatch:
        if self.batch is None:
            raise ConfigurationError("no task batch: call problem.set_batch(problem.sample(gen))")
        return self.batch

    # -- hyperparameters -------------------------------------------------------------------

    def initial_hparams(
        self, seed: int = 0, lr_scale: float = 1.0, rho: float = 0.1
    ) -> dict[str, Tensor]:
        """He-normal kernels, zero offsets, zero classifier centre, ``ρ_j = rho``.

        The classifier's centre starts at zero because labels are a random permutation per
        task: no class-specific centre can help, and a zero one makes the first inner steps
        move each class's weights towards its support example.

        Args:
            seed: seed of the kernels.
            lr_scale: initial ``exp(hparams["log_lr"])``, the factor on ``dynamics.lr``.
            rho: initial ``ρ_j`` for every layer.
        """
        gen = torch.Generator().manual_seed(seed)
        c = self.width

        def he(*shape: int) -> Tensor:
            fan_in = math.prod(shape[1:])
            return torch.randn(*shape, generator=gen, dtype=torch.float64) * math.sqrt(2 / fan_in)

        hp = {
            "conv1": he(c, 1, 3, 3),
            "beta1": torch.zeros(c),
            "conv2": he(c, c, 3, 3),
            "beta2": torch.zeros(c),
            "c_conv3": he(c, c, 3, 3),
            "c_beta3": torch.zeros(c),
            "c_conv4": he(c, c, 3, 3),
            "c_beta4": torch.zeros(c),
            "c_fc_w": torch.zeros(self.ways, self.features),
            "c_fc_b": torch.zeros(self.ways),
            # softplus^{-1}(rho) = log(expm1(rho)), so softplus(hparams["rho"]) = rho
            "rho": torch.full((3,), math.log(math.expm1(rho))),
            "log_lr": torch.tensor(math.log(lr_scale)),
        }
        return {k: v.to(dtype=self.dtype, device=self.device) for k, v in hp.items()}

    # -- the network -----------------------------------------------------------------------

    def _hyper(self, hparams: Params, x: Tensor) -> Tensor:
        """The hyper-representation ``[B, N, C, h, w]`` of images ``[B, N, 1, H, W]``."""
        B, N = x.shape[:2]
        z = x.reshape(B * N, *x.shape[2:])
        for conv, beta in HYPER_LAYERS:
            z = F.max_pool2d(F.conv2d(z, hparams[conv], padding=1), 2)
            z = torch.relu(_batch_norm(z.reshape(B, N, *z.shape[1:]), hparams[beta]))
            z = z.reshape(B * N, *z.shape[2:])
        return z.reshape(B, N, *z.shape[1:])

    def _hyper_cached(self, params: Params, hparams: Params, x: Tensor) -> Tensor:
        """:meth:`_hyper` of the support set, computed once per unrolled segment.

        The hyper-representation does not depend on ``w``; recomputing it in each of the
        ``T`` inner steps would dominate the cost (conv 2 is the largest layer). It is reused
        while the very same hyperparameter tensors (held, so their ids cannot be reused; and
        unmodified) come back:

        * with constant ``λ`` (no hyperparameter requires grad): across all steps, e.g. the
          ``T - K`` steps K-RMD runs without a graph;
        * with ``λ`` that requires grad: only while ``w`` is not made of leaves. Estimators
          start every recorded segment from fresh leaves ``w_c`` and back-propagate once per
          segment, so a segment reuses the features built at its first step, and a replayed
          segment (checkpointing) builds its own instead of a graph already freed.

        Under ``torch.func`` transforms (:class:`core.Forward`) nothing is cached.
        """
        keys = tuple(hparams[name] for layer in HYPER_LAYERS for name in layer) + (x,)
        wrapped = torch._C._functorch.is_functorch_wrapped_tensor
        if any(wrapped(t) for t in keys):
            return self._hyper(hparams, x)
        versions = (torch.is_grad_enabled(), *(t._version for t in keys))
        constant = not any(t.requires_grad for t in keys)
        segment_start = all(w.is_leaf for w in params.values())
        if self._cache is not None and (constant or not segment_start):
            old_keys, old_versions, value = self._cache
            if all(a is b for a, b in zip(old_keys, keys)) and old_versions == versions:
                return value
        value = self._hyper(hparams, x)
        self._cache = (keys, versions, value)
        return value

    def _head(self, params: Params, z: Tensor) -> Tensor:
        """Logits ``[B, N, ways]`` of the task-specific layers on representations ``z``."""
        B, N = z.shape[:2]
        for conv, beta in INNER_LAYERS[:2]:
            # one grouped convolution applies task b's kernels to task b's images
            k = params[conv]
            y = F.conv2d(z.transpose(0, 1).flatten(1, 2), k.flatten(0, 1), padding=1, groups=B)
            y = F.max_pool2d(y, 2)
            y = y.reshape(N, B, k.shape[1], *y.shape[2:]).transpose(0, 1)
            z = torch.relu(_batch_norm(y, params[beta]))
        return torch.einsum("bnd,bkd->bnk", z.flatten(2), params["fc_w"]) + params["fc_b"][:, None]

    def logits(self, params: Params, hparams: Params, x: Tensor) -> Tensor:
        """``nn(x; w, λ)``: logits ``[B, N, ways]`` of images ``[B, N, 1, H, W]``."""
        return self._head(params, self._hyper(hparams, x))

    # -- the bilevel problem ---------------------------------------------------------------

    def init(self, hparams: Params) -> dict[str, Tensor]:
        """``w_0 = c``, one copy per task of the current batch."""
        B = self._current().size
        return {
            name: hparams["c_" + name].expand(B, *hparams["c_" + name].shape)
            for layer in INNER_LAYERS
            for name in layer
        }

    def inner_loss(self, params: Params, hparams: Params) -> Tensor:
        """``Σ_tasks g_S(w, λ)``: summed support cross-entropy plus ``Σ_j ρ_j ||w_j - c_j||²``."""
        batch = self._current()
        z = self._hyper_cached(params, hparams, batch.support)
        logits = self._head(params, z)
        loss = F.cross_entropy(logits.flatten(0, 1), batch.support_y.flatten(), reduction="sum")
        if self.regularize:
            rho = F.softplus(hparams["rho"])
            for j, layer in enumerate(INNER_LAYERS):
                sq = sum(torch.sum((params[n] - hparams["c_" + n]) ** 2) for n in layer)
                loss = loss + rho[j] * sq
        return loss

    def outer_loss(self, params: Params, hparams: Params) -> Tensor:
        """Mean query cross-entropy over the tasks of the batch."""
        batch = self._current()
        logits = self.logits(params, hparams, batch.query)
        return F.cross_entropy(logits.flatten(0, 1), batch.query_y.flatten())

    def metrics(self, params: Params, hparams: Params) -> dict[str, float]:
        """``query_accuracy`` and ``query_loss`` of ``w_T`` on the current batch."""
        batch = self._current()
        with torch.no_grad():
            logits = self.logits(params, hparams, batch.query)
            acc = (logits.argmax(-1) == batch.query_y).double().mean()
            loss = F.cross_entropy(logits.flatten(0, 1), batch.query_y.flatten())
        return {"query_accuracy": float(acc), "query_loss": float(loss)}

    def n_params(self) -> int:
        """Inner parameters of one task (``≈ 75k`` at width 64 on 28x28, App. G.3)."""
        hp = self.initial_hparams()
        return sum(hp["c_" + n].numel() for layer in INNER_LAYERS for n in layer)


def evaluate(
    problem: OneShot,
    hparams: Params,
    dynamics: GradientDescent,
    tasks: TaskBatch,
    chunk: int = 40,
) -> dict[str, float]:
    """Adapt to each task (``T`` inner steps, no graph) and average the query metrics.

    The tasks run ``chunk`` at a time as one batch; ``problem.batch`` is restored after.

    Returns:
        ``query_accuracy`` and ``query_loss`` averaged over the tasks, and
        ``accuracy_ci95``, the half-width ``1.96 sd / sqrt(n)`` of the accuracy's 95%
        interval over the ``n`` tasks.
    """
    previous = problem.batch
    lam = {k: v.detach() for k, v in hparams.items()}
    accs, losses = [], []
    try:
        for i in range(0, tasks.size, chunk):
            part = tasks.task(slice(i, i + chunk))
            problem.set_batch(part)
            with torch.no_grad():
                state, spec = dynamics.init_state(problem, lam)
            for t in range(dynamics.steps):
                state = dynamics.step(problem, state, lam, spec, create_graph=False, t=t)
            params = unflatten(spec, dynamics.params(state))
            assert isinstance(params, Mapping)  # init() returns a dict: narrows the type
            with torch.no_grad():
                logits = problem.logits(params, lam, part.query)
                ce = F.cross_entropy(logits.transpose(1, 2), part.query_y, reduction="none")
            accs.append((logits.argmax(-1) == part.query_y).double().mean(1))
            losses.append(ce.double().mean(1))
    finally:
        problem.set_batch(previous)
        problem._cache = None  # do not keep the evaluation tasks' features alive
    acc, loss = torch.cat(accs), torch.cat(losses)
    sd = float(acc.std(unbiased=False)) if acc.numel() > 1 else 0.0
    return {
        "query_accuracy": float(acc.mean()),
        "query_loss": float(loss.mean()),
        "accuracy_ci95": 1.96 * sd / math.sqrt(acc.numel()),
    }


def _batch_norm(x: Tensor, beta: Tensor) -> Tensor:
    """Per-task batch norm of ``x [B, N, C, h, w]`` over ``(N, h, w)``, plus offset ``beta``.

    ``beta`` is ``[C]`` (shared, a hyperparameter) or ``[B, C]`` (task-specific).
    """
    mean = x.mean(dim=(1, 3, 4), keepdim=True)
    var = x.var(dim=(1, 3, 4), unbiased=False, keepdim=True)
    offset = beta.reshape(*beta.shape[:-1], 1, beta.shape[-1], 1, 1)
    if beta.ndim == 1:
        offset = offset.unsqueeze(0)
    return (x - mean) * torch.rsqrt(var + BN_EPS) + offset
