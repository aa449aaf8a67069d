"""The bilevel problem users subclass: an initial point, an inner and an outer objective."""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import ClassVar, Generic, TypeVar

from torch import Tensor

from core.errors import ConfigurationError
from core.tree import Tree

__all__ = ["BilevelProblem", "H", "P"]

# The structure of a problem's inner parameters ``w`` and of its hyperparameters ``λ``: a
# tensor or a dict of named tensors, fixed per problem (Toy's are tensors, OneShot's dicts).
P = TypeVar("P", bound=Tree)
H = TypeVar("H", bound=Tree)


class BilevelProblem(abc.ABC, Generic[P, H]):
    """A bilevel problem ``min_λ f(ŵ*(λ), λ)`` with ``ŵ*(λ) = w_T`` from Eq. (1) and Eq. (4).

    Subclass it and define three pure functions of tensors (or dicts of named tensors)::

        class Ridge(core.BilevelProblem):
            def init(self, hparams):                # w_0 = Ξ_0(λ); the B_0 term of Eq. (5)
                return torch.zeros(5, dtype=torch.float64)
            def inner_loss(self, params, hparams):  # g(w, λ), a scalar
                return ((X @ params - y) ** 2).mean() + hparams.exp() * (params ** 2).sum()
            def outer_loss(self, params, hparams):  # f(w, λ), a scalar
                return ((Xv @ params - yv) ** 2).mean()

    The inner optimizer (:class:`core.GradientDescent`) is not part of the problem: the same
    problem can be unrolled with any step size, momentum or horizon ``T``.

    For type checkers the class is generic in the structures it works on,
    ``BilevelProblem[P, H]`` with ``P`` that of ``w`` and ``H`` that of ``λ`` (``Tensor``, a
    ``dict[str, Tensor]`` or :data:`core.tree.Tree` for either); estimators accept any.

    A problem may also set ``inner_grad`` to a function ``(params, hparams) -> params`` that
    returns ``∇_w g`` in closed form, written with differentiable torch operations. Estimators
    then call it instead of autograd; it must agree with ``inner_loss`` (a test should check it).

    Built-in problems also define :meth:`initial_hparams` (where an outer loop starts) and
    :meth:`metrics` (application metrics such as accuracy), which the service records.

    Attributes:
        inner_grad: optional closed-form ``∇_w g(w, λ)``; ``None`` means autograd.
    """

    inner_grad: ClassVar[Callable[..., Tree] | None] = None

    @abc.abstractmethod
    def init(self, hparams: H) -> P:
        """The initial inner parameters ``w_0 = Ξ_0(λ)`` (Eq. 4); may depend on ``hparams``."""

    @abc.abstractmethod
    def inner_loss(self, params: P, hparams: H) -> Tensor:
        """The lower-level objective ``g(w, λ)`` as a scalar tensor."""

    @abc.abstractmethod
    def outer_loss(self, params: P, hparams: H) -> Tensor:
        """The upper-level objective ``f(w, λ)`` as a scalar tensor."""

    def initial_hparams(self) -> H:
        """Where the outer loop starts by default; built-in problems define it.

        Raises:
            ConfigurationError: the problem defines no default (pass ``hparams`` yourself).
        """
        raise ConfigurationError(
            f"{type(self).__name__} defines no initial_hparams(); pass hparams explicitly"
        )

    def inputs(self) -> tuple[Tensor, ...]:
        """The data tensors that change between hypergradients (a meta-batch); none by default.

        :class:`core.Graphed` records one hypergradient as a CUDA graph that reads fixed
        buffers: it copies these tensors into its buffers before each replay.
        """
        return ()

    def set_inputs(self, tensors: tuple[Tensor, ...]) -> None:
        """Make ``tensors`` (shaped as :meth:`inputs`) the data the losses read."""
        if tensors:
            raise ConfigurationError(f"{type(self).__name__} has no inputs() to set")

    def at_step(self, t: int) -> BilevelProblem[P, H]:
        """The problem as inner step ``t`` (0-based) of Eq. (4) sees it; ``self`` by default.

        A problem that trains on minibatches returns a view whose ``inner_loss`` (and
        ``inner_grad``) read step ``t``'s batch, so ``Ξ_{t+1}`` depends on ``t``. The batch
        must be a pure function of ``t`` (and of fixed settings such as a seed): the
        estimators replay steps (K-RMD, checkpointing) and must see the same batch again.
        ``init`` and ``outer_loss`` are always those of ``self``.
        """
        return self

    def n_batches(self, level: str) -> int:
        """How many fixed minibatches the ``"inner"`` or ``"outer"`` objective splits into.

        Stochastic single-loop methods (:mod:`core.single_loop`) draw one batch per step and
        SABA keeps a memory slot per batch. One (the whole objective) by default.
        """
        return 1

    def on_batch(self, level: str, index: int) -> BilevelProblem[P, H]:
        """A view whose ``inner_loss`` (``level="inner"``) or ``outer_loss`` reads batch ``index``.

        The contract the stochastic methods rely on: the mean over ``index`` of the batch
        objectives is the full objective (exactly so when the batches have equal sizes), so
        a uniformly drawn batch gives an unbiased gradient. ``self`` by default.
        """
        return self

    def metrics(self, params: P, hparams: H) -> dict[str, float]:
        """Application metrics of ``ŵ* = params`` (e.g. test accuracy); none by default."""
        return {}
