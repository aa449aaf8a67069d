"""What the problems over a user's data set share: the splits, the losses, the minibatches.

A data set is named arrays ``x_<split>`` ``[n, d]`` and ``y_<split>`` ``[n]`` for the splits
``train`` (the inner problem's), ``val`` (the outer problem's) and optionally ``test``.
Integer labels make a classification set, floating-point targets a regression set.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from core.errors import ConfigurationError
from core.problem import BilevelProblem, H, P
from core.problems.batches import minibatch
from core.validate import integer_at_least

__all__ = ["SPLITS", "Splits", "SupervisedProblem"]

SPLITS = ("train", "val", "test")
Task = Literal["classification", "regression"]


@dataclass(frozen=True)
class Splits:
    """Features and targets per split, standardised with the training split's statistics.

    Attributes:
        x: split name -> ``[n, d]`` features.
        y: split name -> ``[n]`` int64 labels (classification) or float targets (regression,
            standardised: ``(y - y_shift) / y_scale``).
        task: ``"classification"`` or ``"regression"``.
        n_classes: ``C`` (classification), else 0.
        y_shift, y_scale: undo the targets' standardisation, for RMSE in the data's units.
    """

    x: dict[str, Tensor]
    y: dict[str, Tensor]
    task: Task
    n_classes: int
    y_shift: float = 0.0
    y_scale: float = 1.0

    @property
    def n_features(self) -> int:
        """``d``, the columns of every ``x``."""
        return int(self.x["train"].shape[1])

    @classmethod
    def from_arrays(
        cls,
        arrays: Mapping[str, Any],
        *,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device | None = None,
        standardize: bool = True,
    ) -> Splits:
        """Splits from named arrays (tensors or anything ``torch.as_tensor`` takes).

        Args:
            arrays: ``x_train``, ``y_train``, ``x_val``, ``y_val`` and optionally
                ``x_test``, ``y_test``; other names are ignored.
            dtype: of the features (and of regression targets).
            device: where every tensor lives.
            standardize: centre and scale each feature (and a regression target) by the
                training split's mean and standard deviation, so that one inner step size
                suits every data set.

        Raises:
            ConfigurationError: a missing split, mismatched rows or features, labels out of
                range.
        """
        for need in ("x_train", "y_train", "x_val", "y_val"):
            if need not in arrays:
                raise ConfigurationError(f"the data set has no array {need!r}")
        names = [s for s in SPLITS if f"x_{s}" in arrays and f"y_{s}" in arrays]
        x = {s: torch.as_tensor(arrays[f"x_{s}"]).to(device=device, dtype=dtype) for s in names}
        raw_y = {s: torch.as_tensor(arrays[f"y_{s}"]).to(device=device) for s in names}
        d = x["train"].reshape(x["train"].shape[0], -1).shape[1]
        for s in names:
            x[s] = x[s].reshape(x[s].shape[0], -1)
            if x[s].shape[1] != d or raw_y[s].shape != (x[s].shape[0],):
                raise ConfigurationError(
                    f"x_{s} must be [n, {d}] and y_{s} [n], got {tuple(x[s].shape)} and "
                    f"{tuple(raw_y[s].shape)}"
                )
        classification = not torch.is_floating_point(raw_y["train"])
        shift, scale = 0.0, 1.0
        if classification:
            y = {s: v.long() for s, v in raw_y.items()}
            n_classes = int(y["train"].max()) + 1
            for s, v in y.items():
                if int(v.min()) < 0 or int(v.max()) >= n_classes:
                    raise ConfigurationError(
                        f"y_{s} has labels in [{int(v.min())}, {int(v.max())}]; y_train's "
                        f"classes are 0..{n_classes - 1}"
                    )
        else:
            n_classes = 0
            y = {s: v.to(dtype) for s, v in raw_y.items()}
            if standardize:
                shift = float(y["train"].mean())
                scale = float(y["train"].std()) if y["train"].numel() > 1 else 1.0
                scale = scale if scale > 0 else 1.0
                y = {s: (v - shift) / scale for s, v in y.items()}
        if standardize:
            mean = x["train"].mean(dim=0)
            std = x["train"].std(dim=0) if x["train"].shape[0] > 1 else torch.ones_like(mean)
            std = torch.where(std > 0, std, torch.ones_like(std))  # constant columns stay 0
            x = {s: (v - mean) / std for s, v in x.items()}
        task: Task = "classification" if classification else "regression"
        return cls(x, y, task, n_classes, shift, scale)


class SupervisedProblem(BilevelProblem[P, H], Generic[P, H]):
    """A model trained on ``train`` (inner) and judged on ``val`` (outer), with minibatches.

    Subclasses define :meth:`predict` (the model's outputs) and the hyperparameters; the
    per-example loss is the mean squared error halved (regression), the logistic loss (two
    classes, one output) or the cross-entropy (``C`` outputs).

    With ``batch_size`` smaller than the training set, :meth:`at_step` returns a view of the
    problem on step ``t``'s rows (:func:`core.problems.batches.minibatch` of the seed and
    ``t``), so ``F(λ) = f(w_T(λ))`` is one deterministic function: the steps taken are the
    same in every hyper-iteration and on every replay, and every estimator differentiates
    through exactly those steps.

    Args:
        data: the splits.
        batch_size: training rows per inner step; ``None`` for all of them.
        seed: seeds the minibatches.

    Raises:
        ConfigurationError: a bad ``batch_size``.
    """

    def __init__(self, data: Splits, *, batch_size: int | None = None, seed: int = 0):
        integer_at_least(batch_size, "batch_size", optional=True)
        self.data = data
        self.batch_size = batch_size
        self.seed = seed
        self.rows: Tensor | None = None  # the current step's rows; None: the whole set
        n = data.x["train"].shape[0]
        self.onehot_train = (
            F.one_hot(data.y["train"], data.n_classes).to(data.x["train"].dtype)
            if data.task == "classification"
            else None
        )
        self.n_train = int(n)

    # -- minibatches -------------------------------------------------------------------------

    def at_step(self, t: int) -> SupervisedProblem[P, H]:
        """This problem on inner step ``t``'s rows (itself without ``batch_size``)."""
        if self.batch_size is None or self.batch_size >= self.n_train:
            return self
        view = copy.copy(self)
        rows = minibatch(self.n_train, self.batch_size, self.seed, t)
        view.rows = rows.to(self.data.x["train"].device)
        return view

    def n_batches(self, level: str) -> int:
        """Training batches of ``batch_size`` rows (``"inner"``); one for ``"outer"``."""
        if level != "inner" or self.batch_size is None or self.batch_size >= self.n_train:
            return 1
        return -(-self.n_train // self.batch_size)

    def on_batch(self, level: str, index: int) -> SupervisedProblem[P, H]:
        """Training batch ``index``: the rows of step ``index`` of the first epoch.

        Those steps cut one seeded permutation into consecutive batches
        (:func:`core.problems.batches.minibatch`): a fixed partition, as the single-loop
        methods (and SABA's memory) need. ``self`` for the outer level.
        """
        return self if self.n_batches(level) == 1 else self.at_step(index)

    def train_batch(self) -> tuple[Tensor, Tensor]:
        """``(x, y)`` of the current step's training rows."""
        x, y = self.data.x["train"], self.data.y["train"]
        if self.rows is None:
            return x, y
        return x[self.rows], y[self.rows]

    def train_targets(self) -> Tensor:
        """The current rows' targets as the residual needs them: one-hot, 0/1 or values."""
        if self.onehot_train is not None and self.outputs > 1:
            onehot = self.onehot_train
            return onehot if self.rows is None else onehot[self.rows]
        y = self.train_batch()[1]
        return y.to(self.data.x["train"].dtype)[:, None]

    # -- the model's outputs and losses ----------------------------------------------------

    @property
    def outputs(self) -> int:
        """Columns of :meth:`predict`: 1 for regression and two classes, else ``C``."""
        if self.data.task == "regression" or self.data.n_classes == 2:
            return 1
        return self.data.n_classes

    def predict(self, params: P, x: Tensor) -> Tensor:
        """The model's outputs ``[n, outputs]`` on features ``x``.

        The hook of the default :meth:`outer_loss` and :meth:`metrics`; a problem that
        overrides both (``MultiTask``, one model per task) need not define it.
        """
        raise NotImplementedError(f"{type(self).__name__} defines no predict()")

    def example_losses(self, out: Tensor, y: Tensor) -> Tensor:
        """Per-example loss ``[n]`` of outputs ``out`` against targets ``y``."""
        if self.data.task == "regression":
            return 0.5 * (out[:, 0] - y) ** 2
        if self.outputs == 1:
            z = out[:, 0]
            return F.softplus(z) - y.to(z.dtype) * z  # the logistic loss, stable
        return F.cross_entropy(out, y, reduction="none")

    def residual(self, out: Tensor) -> Tensor:
        """``∂ loss_i / ∂ out_i`` current rows: ``softmax - onehot``, ``σ(z) - y``, ``z - y``."""
        targets = self.train_targets()
        if self.data.task == "regression":
            return out - targets
        if self.outputs == 1:
            return torch.sigmoid(out) - targets
        return torch.softmax(out, dim=1) - targets

    def outer_loss(self, params: P, hparams: H) -> Tensor:
        """``f(w, λ)``: the mean loss on the whole validation split."""
        return self.example_losses(
            self.predict(params, self.data.x["val"]), self.data.y["val"]
        ).mean()

    # -- metrics ------------------------------------------------------------------------------

    def metrics(self, params: P, hparams: H) -> dict[str, float]:
        """``<split>_acc`` or ``<split>_rmse`` (in the data's units) per split, ``val_loss``."""
        out: dict[str, float] = {}
        with torch.no_grad():
            for split, x in self.data.x.items():
                pred, y = self.predict(params, x), self.data.y[split]
                if self.data.task == "regression":
                    mse = float(torch.mean((pred[:, 0] - y) ** 2))
                    out[f"{split}_rmse"] = math.sqrt(mse) * self.data.y_scale
                elif self.outputs == 1:
                    out[f"{split}_acc"] = float(((pred[:, 0] > 0).long() == y).double().mean())
                else:
                    out[f"{split}_acc"] = float((pred.argmax(dim=1) == y).double().mean())
            out["val_loss"] = float(self.outer_loss(params, hparams))
        return out


def check_positive(value: float, name: str) -> None:
    """Raise unless ``value`` is a finite number ``> 0``."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ConfigurationError(f"{name} must be a finite number > 0, got {value!r}")
