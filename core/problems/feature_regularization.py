"""Per-feature (or per-group) L2 penalties of a linear model: the classic gradient-based HPO."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from core.errors import ConfigurationError
from core.problems._inputs import with_bias
from core.problems._supervised import Splits, SupervisedProblem, check_positive

__all__ = ["MODELS", "FeatureRegularization"]

MODELS = ("linear", "logistic", "softmax")
Model = Literal["linear", "logistic", "softmax"]


class FeatureRegularization(SupervisedProblem[Tensor, dict[str, Tensor]]):
    """Linear, logistic or softmax regression with one learned L2 penalty per feature (group).

    With ``X̃ = [X, 1]``, weights ``W ∈ R^{k x (d+1)}`` (``k = 1`` for ``linear`` and
    ``logistic``, ``C`` for ``softmax``), ``λ = {"feature_penalties": λ ∈ R^G}`` and ``g(j)``
    the group of feature ``j`` (each feature its own group by default)::

        g(W, λ) = (1/|B_t|) Σ_{i ∈ B_t} loss(W x̃_i, y_i) + Σ_j exp(λ_{g(j)}) Σ_c W_{cj}²
        f(W, λ) = (1/m) Σ_j loss(W x̃_j, y_j)                           (validation split)

    The bias column is not penalised. ``exp`` keeps every penalty positive, so ``g`` is
    strongly convex in the penalised weights (Prop. 3.1's assumption, up to the bias).
    ``W_0 = 0`` (``B_0 = 0``) and ``∇_λ f = 0`` as Theorem 3.4 assumes. :meth:`inner_grad`
    is the closed form ``(1/|B_t|) Rᵀ X̃_B + 2 · W ⊙ P`` with ``R`` the residual
    (``softmax - onehot``, ``σ(z) - y`` or ``z - y``) and ``P`` the penalties per column.

    Args:
        data: the splits (:class:`core.problems.Splits`).
        model: ``"linear"`` (regression), ``"logistic"`` (two classes) or ``"softmax"``;
            by default the one that fits ``data``.
        groups: the group index ``0..G-1`` of each feature; ``None`` for one per feature.
        init_penalty: every penalty's starting value (``λ = log init_penalty``).
        batch_size: training rows per inner step (``None``: all).
        seed: seeds the minibatches.

    Raises:
        ConfigurationError: a model that does not fit the data, bad groups or penalty.
    """

    def __init__(
        self,
        data: Splits,
        *,
        model: Model | None = None,
        groups: Sequence[int] | None = None,
        init_penalty: float = 1e-3,
        batch_size: int | None = None,
        seed: int = 0,
    ):
        fits = {"regression": "linear"}.get(data.task) or (
            "logistic" if data.n_classes == 2 else "softmax"
        )
        model = model or fits  # type: ignore[assignment]  # a str of MODELS either way
        if model not in MODELS:
            raise ConfigurationError(f"model must be one of {MODELS}, got {model!r}")
        if (model == "linear") != (data.task == "regression") or (
            model == "logistic" and data.n_classes != 2
        ):
            raise ConfigurationError(
                f"model {model!r} does not fit a {data.task} data set with "
                f"{data.n_classes} classes; use {fits!r}"
            )
        check_positive(init_penalty, "init_penalty")
        super().__init__(data, batch_size=batch_size, seed=seed)
        self.model = model
        self.k = 1 if model != "softmax" else data.n_classes
        d = data.n_features
        if groups is None:
            index = torch.arange(d)
        else:
            index = torch.as_tensor(list(groups), dtype=torch.int64)
            if index.shape != (d,) or int(index.min()) < 0:
                raise ConfigurationError(
                    f"groups must give a group >= 0 for each of the {d} features, got "
                    f"{len(index)} entries"
                )
        self.groups = index.to(data.x["train"].device)
        self.n_groups = int(index.max()) + 1
        self.init_penalty = init_penalty
        self.xb = {s: with_bias(x) for s, x in data.x.items()}

    @property
    def outputs(self) -> int:
        """``k``: one output for ``linear`` and ``logistic``, ``C`` for ``softmax``."""
        return self.k

    def predict(self, params: Tensor, x: Tensor) -> Tensor:
        """``X̃ Wᵀ`` (``x`` without the bias column; it is appended here)."""
        return with_bias(x) @ params.T

    def penalties(self, hparams: dict[str, Tensor]) -> Tensor:
        """``exp(λ_{g(j)})`` per weight column, 0 for the bias: ``[d+1]``."""
        pen = torch.exp(hparams["feature_penalties"])[self.groups]
        return torch.cat([pen, pen.new_zeros(1)])

    # -- the problem ---------------------------------------------------------------------

    def init(self, hparams: dict[str, Tensor]) -> Tensor:
        """``W_0 = 0``, independent of ``λ``."""
        return self.xb["train"].new_zeros(self.k, self.xb["train"].shape[1])

    def initial_hparams(self) -> dict[str, Tensor]:
        """Every penalty at ``init_penalty``."""
        value = math.log(self.init_penalty)
        return {"feature_penalties": self.xb["train"].new_full((self.n_groups,), value)}

    def _batch(self) -> Tensor:
        xb = self.xb["train"]
        return xb if self.rows is None else xb[self.rows]

    def inner_loss(self, params: Tensor, hparams: dict[str, Tensor]) -> Tensor:
        """``g(W, λ)`` on the current step's rows."""
        x, y = self._batch(), self.train_batch()[1]
        losses = self.example_losses(x @ params.T, y)
        return losses.mean() + torch.sum(self.penalties(hparams) * params**2)

    def inner_grad(self, params: Tensor, hparams: dict[str, Tensor]) -> Tensor:
        """``∇_W g = (1/|B_t|) Rᵀ X̃_B + 2 W ⊙ P`` (see the class docstring)."""
        x = self._batch()
        residual = self.residual(x @ params.T)
        return residual.T @ x / x.shape[0] + 2.0 * params * self.penalties(hparams)

    def outer_loss(self, params: Tensor, hparams: dict[str, Tensor]) -> Tensor:
        """``f(W, λ)``: the mean loss on the validation split."""
        return self.example_losses(self.xb["val"] @ params.T, self.data.y["val"]).mean()

    def metrics(self, params: Tensor, hparams: dict[str, Tensor]) -> dict[str, float]:
        """The splits' accuracy or RMSE, ``val_loss``, and the penalties' geometric mean."""
        out = super().metrics(params, hparams)
        out["mean_log_penalty"] = float(hparams["feature_penalties"].detach().mean())
        return out
