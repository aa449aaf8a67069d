"""A small MLP with learned per-layer weight decay and, optionally, per-example weights."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from core.errors import ConfigurationError
from core.problems._supervised import Splits, SupervisedProblem, check_positive

__all__ = ["MLP"]


class MLP(SupervisedProblem[dict[str, Tensor], dict[str, Tensor]]):
    """A ``tanh`` MLP classifier or regressor whose weight decay per layer is learned.

    With layers ``l = 0..L-1`` (the hidden sizes, then the output layer),
    ``λ = {"layer_decay": λ ∈ R^L}`` and, with ``example_weights``, ``"example_weights": ν ∈ R^n``::

        g(w, λ) = (1/|B_t|) Σ_{i ∈ B_t} σ(ν_i) loss(net_w(x_i), y_i) + Σ_l exp(λ_l) ||W_l||_F²
        f(w, λ) = (1/m) Σ_j loss(net_w(x_j), y_j)                     (validation split)

    (without ``example_weights`` every ``σ(ν_i)`` is 1). Biases are not penalised. ``tanh``
    keeps ``g`` twice differentiable, as Eq. (5) needs. ``w_0`` is a fixed Glorot-uniform
    draw from ``seed`` that does not depend on ``λ`` (``B_0 = 0``); the inner gradient is
    autograd's. A learned inner step size is the dynamics' ``lr_key`` (``inner.learn_lr``).

    Args:
        data: the splits.
        hidden: the hidden layers' widths (at least one layer).
        example_weights: also learn one weight per training example (Section 4.2.1's idea).
        init_decay: every layer's starting decay (``λ_l = log init_decay``).
        batch_size: training rows per inner step (``None``: all).
        seed: seeds ``w_0`` and the minibatches.

    Raises:
        ConfigurationError: no or non-positive hidden widths, a bad ``init_decay``.
    """

    def __init__(
        self,
        data: Splits,
        *,
        hidden: Sequence[int] = (32,),
        example_weights: bool = False,
        init_decay: float = 1e-3,
        batch_size: int | None = None,
        seed: int = 0,
    ):
        sizes = list(hidden)
        if not sizes or any(not isinstance(h, int) or h < 1 for h in sizes):
            raise ConfigurationError(f"hidden must be one or more widths >= 1, got {hidden!r}")
        check_positive(init_decay, "init_decay")
        super().__init__(data, batch_size=batch_size, seed=seed)
        self.widths = [data.n_features, *sizes, self.outputs]
        self.example_weights = example_weights
        self.init_decay = init_decay
        like = data.x["train"]
        gen = torch.Generator().manual_seed(seed)
        self.w0: dict[str, Tensor] = {}
        for layer, (fan_in, fan_out) in enumerate(zip(self.widths[:-1], self.widths[1:])):
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            weight = torch.rand(fan_out, fan_in, generator=gen, dtype=torch.float64) * 2 - 1
            self.w0[f"layer{layer}.weight"] = (bound * weight).to(like)
            self.w0[f"layer{layer}.bias"] = like.new_zeros(fan_out)

    @property
    def n_layers(self) -> int:
        """``L``: the hidden layers and the output layer."""
        return len(self.widths) - 1

    def predict(self, params: dict[str, Tensor], x: Tensor) -> Tensor:
        """``net_w(x)``: affine layers with ``tanh`` between them, ``[n, outputs]``."""
        h = x
        for layer in range(self.n_layers):
            h = h @ params[f"layer{layer}.weight"].T + params[f"layer{layer}.bias"]
            if layer < self.n_layers - 1:
                h = torch.tanh(h)
        return h

    # -- the problem ---------------------------------------------------------------------

    def init(self, hparams: dict[str, Tensor]) -> dict[str, Tensor]:
        """``w_0``: the seeded Glorot draw (copies), independent of ``λ``."""
        return {k: v.clone() for k, v in self.w0.items()}

    def initial_hparams(self) -> dict[str, Tensor]:
        """Every decay at ``init_decay``; every example weight at ``σ(0) = ½``."""
        like = self.data.x["train"]
        out = {"layer_decay": like.new_full((self.n_layers,), math.log(self.init_decay))}
        if self.example_weights:
            out["example_weights"] = like.new_zeros(self.n_train)
        return out

    def inner_loss(self, params: dict[str, Tensor], hparams: dict[str, Tensor]) -> Tensor:
        """``g(w, λ)`` on the current step's rows."""
        x, y = self.train_batch()
        losses = self.example_losses(self.predict(params, x), y)
        if self.example_weights:
            nu = hparams["example_weights"]
            losses = torch.sigmoid(nu if self.rows is None else nu[self.rows]) * losses
        decay = torch.exp(hparams["layer_decay"])
        reg = sum(
            decay[layer] * torch.sum(params[f"layer{layer}.weight"] ** 2)
            for layer in range(self.n_layers)
        )
        return losses.mean() + reg
