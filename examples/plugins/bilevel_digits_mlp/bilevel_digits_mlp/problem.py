"""The ``digits_mlp`` problem, written as a generic ``core.BilevelProblem`` (autograd's
inner gradient, no closed form). The worker imports this module; the API never does."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

import core
from bilevel_digits_mlp.spec import DigitsMLPOptions
from core.data import class_balanced_split, load_digits

__all__ = ["DigitsMLP", "build"]


class DigitsMLP(core.BilevelProblem[dict[str, Tensor], dict[str, Tensor]]):
    """``x -> W1 tanh(W0 x + b0) + b1`` on 64 pixels, 10 classes.

    With ``λ = {"pixel_penalty": p ∈ R^64, "output_penalty": q ∈ R}``::

        g(w, λ) = CE_train(w) + Σ_j exp(p_j) ||W0[:, j]||² + exp(q) ||W1||²
        f(w, λ) = CE_val(w)

    so the outer problem learns which pixels the first layer may lean on. ``w_0`` is a
    seeded Glorot draw independent of ``λ``.
    """

    def __init__(
        self,
        options: DigitsMLPOptions,
        *,
        seed: int,
        device: torch.device,
        arrays: dict[str, Any] | None = None,
    ):
        if arrays is None:  # scikit-learn's digits, split class-balanced by the seed
            data = load_digits(dtype=torch.float64)
            train, val, test = class_balanced_split(
                data.labels, [options.n_train, options.n_val], seed=seed
            )
            x, y = data.images.to(device), data.labels.to(device)
            self.x = {"train": x[train], "val": x[val], "test": x[test]}
            self.y = {"train": y[train], "val": y[val], "test": y[test]}
        else:  # a team's data set (admitted: 64 features, 10 classes); its first rows
            rows = {"train": options.n_train, "val": options.n_val, "test": None}
            self.x, self.y = {}, {}
            for split, n in rows.items():
                if f"x_{split}" not in arrays:
                    continue
                x = torch.as_tensor(arrays[f"x_{split}"][:n], dtype=torch.float64)
                self.x[split] = x.reshape(len(x), -1).to(device)
                self.y[split] = torch.as_tensor(arrays[f"y_{split}"][:n]).long().to(device)
        self.init_penalty = options.init_penalty
        gen = torch.Generator().manual_seed(seed)
        self.w0: dict[str, Tensor] = {}
        for layer, (fan_in, fan_out) in enumerate([(64, options.hidden), (options.hidden, 10)]):
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            w = (torch.rand(fan_out, fan_in, generator=gen, dtype=torch.float64) * 2 - 1) * bound
            self.w0[f"W{layer}"] = w.to(device)
            self.w0[f"b{layer}"] = torch.zeros(fan_out, dtype=torch.float64, device=device)

    def _logits(self, w: dict[str, Tensor], x: Tensor) -> Tensor:
        return torch.tanh(x @ w["W0"].T + w["b0"]) @ w["W1"].T + w["b1"]

    def init(self, hparams: dict[str, Tensor]) -> dict[str, Tensor]:
        """``w_0``: the seeded draw (copies)."""
        return {k: v.clone() for k, v in self.w0.items()}

    def initial_hparams(self) -> dict[str, Tensor]:
        """Every penalty at ``init_penalty``."""
        like = self.w0["W0"]
        log_p = math.log(self.init_penalty)
        return {
            "pixel_penalty": like.new_full((64,), log_p),
            "output_penalty": like.new_full((1,), log_p),
        }

    def inner_loss(self, params: dict[str, Tensor], hparams: dict[str, Tensor]) -> Tensor:
        """``g(w, λ)``: training cross-entropy plus the learned penalties."""
        ce = F.cross_entropy(self._logits(params, self.x["train"]), self.y["train"])
        pixels = torch.sum(torch.exp(hparams["pixel_penalty"]) * (params["W0"] ** 2).sum(dim=0))
        out = torch.exp(hparams["output_penalty"][0]) * torch.sum(params["W1"] ** 2)
        return ce + pixels + out

    def outer_loss(self, params: dict[str, Tensor], hparams: dict[str, Tensor]) -> Tensor:
        """``f(w, λ)``: validation cross-entropy."""
        return F.cross_entropy(self._logits(params, self.x["val"]), self.y["val"])

    def metrics(self, params: dict[str, Tensor], hparams: dict[str, Tensor]) -> dict[str, float]:
        """Validation and test accuracy of ``ŵ*``."""
        return {
            f"{split}_accuracy": float(
                (self._logits(params, self.x[split]).argmax(1) == self.y[split]).double().mean()
            )
            for split in ("val", "test")
            if split in self.x
        }


def build(
    options: DigitsMLPOptions,
    *,
    seed: int,
    device: torch.device,
    datasets: Callable[[str], Any],
) -> DigitsMLP:
    """The plugin's factory: the worker calls it with the job's admitted options."""
    arrays = datasets(options.dataset) if options.dataset else None
    return DigitsMLP(options, seed=seed, device=device, arrays=arrays)
