"""Data hypercleaning (Section 4.2.1, Appendix G.1): learn per-example training weights."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from core.data import (
    FASHION_MNIST_DEBIAN_DIR,
    class_balanced_split,
    corrupt_labels,
    load_digits,
    load_fashion_mnist,
    load_mnist,
)
from core.errors import ConfigurationError
from core.problem import BilevelProblem
from core.problems._inputs import accuracy, check_labelled_sets, with_bias
from core.problems.batches import minibatch
from core.validate import integer_at_least

__all__ = ["DATASETS", "THRESHOLDS", "Hypercleaning", "f1_score"]

DATASETS = ("mnist", "fashion-mnist", "digits")
# λ_i below a threshold flags example i as corrupted: -3 in Section 4.2.1, the others are
# the ones Appendix G.1 compares; 0 is σ(λ_i) < 1/2.
THRESHOLDS = (-4.0, -3.0, -1.0, 0.0)


class Hypercleaning(BilevelProblem[Tensor, Tensor]):
    """A linear classifier trained on half-corrupted labels with learned example weights.

    With ``X̃ = [X, 1]`` (a bias column), ``W ∈ R^{C x (d+1)}`` and ``λ ∈ R^n``::

        g(W, λ) = (1/n) Σ_i σ(λ_i) CE(W x̃_i, y_i) + reg ||W||_F²      (inner, training set)
        f(W, λ) = (1/m) Σ_j CE(W x̃_j, y_j)                          (outer, validation set)

    **Normalisation.** The paper writes ``g`` as a *sum* over the ``n = 5000`` examples; its
    curvature is then ``n`` times that of the mean and gradient descent with the paper's
    ``γ = 1`` diverges at the first step. We use the **mean** over the training examples
    (equivalently the paper's sum with step ``γ / n``) and keep ``reg = 0.001`` on it, so
    ``g`` is ``0.002``-strongly convex. On MNIST pixels in ``[0, 1]`` the largest curvature of
    the mean loss at ``W = 0`` is ``≈ 0.1 · λ_max(X̃ᵀ diag(σ(λ)) X̃ / n) ≈ 3.9 · mean σ(λ_i)``,
    i.e. ``≈ 1.95`` at ``λ = 0``: just inside ``2/γ``. The first steps oscillate a little,
    and the loss still falls (1.15 to 0.91 in 100 steps at ``λ = 0`` on the 50%-corrupted
    set) because softmax curvature drops away from ``W = 0``. ``W_0 = 0`` does not depend on
    ``λ`` (``B_0 = 0``) and ``∇_λ f = 0``, as Theorem 3.4 assumes.

    Args:
        x_train, y_train: training features ``[n, d]`` and (corrupted) labels ``[n]``.
        x_val, y_val: the clean validation set of the outer loss.
        x_test, y_test: the held-out test set of :meth:`metrics` (optional).
        corrupted: bool mask ``[n]`` of training labels that were changed; enables F1.
        n_classes: ``C``; by default one more than the largest label.
        reg: the ridge weight on ``||W||_F²``.
        batch_size: training rows per inner batch (:meth:`on_batch`, :meth:`at_step`);
            ``None`` for full-batch inner steps.
        val_batch_size: validation rows per outer batch; ``None`` for one batch.
        seed: seeds the partition into batches and the inner steps' draws.

    Raises:
        ConfigurationError: mismatched shapes or dtypes.

    Example:
        >>> p = Hypercleaning.from_dataset("digits", n_train=100, n_val=100, dtype=torch.float64)
        >>> import core
        >>> res = core.hypergradient(p, p.initial_hparams(), core.GradientDescent(10, lr=1.0),
        ...                          core.Truncated(K=2))
        >>> res.grad.shape
        torch.Size([100])
    """

    def __init__(
        self,
        x_train: Tensor,
        y_train: Tensor,
        x_val: Tensor,
        y_val: Tensor,
        x_test: Tensor | None = None,
        y_test: Tensor | None = None,
        *,
        corrupted: Tensor | None = None,
        n_classes: int | None = None,
        reg: float = 0.001,
        batch_size: int | None = None,
        val_batch_size: int | None = None,
        seed: int = 0,
    ):
        pairs = {"train": (x_train, y_train), "val": (x_val, y_val)}
        if x_test is not None and y_test is not None:
            pairs["test"] = (x_test, y_test)
        implied = check_labelled_sets(pairs)
        if corrupted is not None and corrupted.shape != y_train.shape:
            raise ConfigurationError(
                f"corrupted must have shape {tuple(y_train.shape)}, got {tuple(corrupted.shape)}"
            )
        if reg < 0:
            raise ConfigurationError(f"reg must be >= 0, got {reg!r}")
        self.n_classes = n_classes or implied
        x = {k: with_bias(v) for k, (v, _) in pairs.items()}
        y = {k: v.long() for k, (_, v) in pairs.items()}
        self.x_train, self.x_val, self.x_test = x["train"], x["val"], x.get("test")
        self.y_train, self.y_val, self.y_test = y["train"], y["val"], y.get("test")
        self.onehot_train = F.one_hot(self.y_train, self.n_classes).to(x_train.dtype)
        self.corrupted = None if corrupted is None else corrupted.bool()
        self.reg = reg
        integer_at_least(batch_size, "batch_size", optional=True)
        integer_at_least(val_batch_size, "val_batch_size", optional=True)
        self.batch_size, self.seed = batch_size, seed
        gen = torch.Generator().manual_seed(seed)
        # fixed partitions: SABA keeps one memory slot per batch
        self._batches = {
            level: torch.split(torch.randperm(n, generator=gen), size)
            if size is not None and size < n
            else None
            for level, n, size in (
                ("inner", len(self.y_train), batch_size),
                ("outer", len(self.y_val), val_batch_size),
            )
        }
        self._rows: Tensor | None = None  # λ's rows that a training batch view reads
        self._views: dict[tuple[str, int], Hypercleaning] = {}

    @classmethod
    def from_dataset(
        cls,
        name: str,
        data_dir: str | Path | None = None,
        *,
        n_train: int = 5000,
        n_val: int = 5000,
        n_test: int | None = None,
        fraction: float = 0.5,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device | None = None,
        batch_size: int | None = None,
        val_batch_size: int | None = None,
        batch_seed: int | None = None,
    ) -> Hypercleaning:
        """The paper's setup on a real data set (Appendix G.1).

        All examples of the data set (MNIST: 60,000 + 10,000) are pooled; ``n_train`` and
        ``n_val`` class-balanced examples are drawn (seeded), the test set is the rest (or
        ``n_test`` class-balanced ones of it), and a ``fraction`` of the training labels is
        replaced by uniformly random ones (:func:`core.data.corrupt_labels`).

        Args:
            name: ``"mnist"``, ``"fashion-mnist"`` or ``"digits"`` (1797 examples in all).
            data_dir: the folder of the IDX files (or its parent); required for MNIST,
                Debian's folder by default for Fashion-MNIST, unused for digits.
            n_train: training examples (the inner problem's).
            n_val: validation examples (the outer problem's).
            n_test: test examples; ``None`` for all the rest.
            fraction: of training labels replaced.
            seed: seeds the split and the corruption.
            dtype: of every tensor.
            device: where every tensor lives.
            batch_size: training rows per inner batch, as for the constructor.
            val_batch_size: validation rows per outer batch, as for the constructor.
            batch_seed: seeds the batches; ``seed`` when ``None``.

        Raises:
            ConfigurationError: unknown name, missing data directory or files, sizes that do
                not fit the data set.
        """
        if name == "mnist":
            if data_dir is None:
                raise ConfigurationError("mnist needs data_dir (the folder of its IDX files)")
            data = load_mnist(data_dir, "all", dtype=dtype)
        elif name == "fashion-mnist":
            data = load_fashion_mnist(data_dir or FASHION_MNIST_DEBIAN_DIR, "all", dtype=dtype)
        elif name == "digits":
            data = load_digits(dtype=dtype)
        else:
            raise ConfigurationError(f"dataset must be one of {DATASETS}, got {name!r}")
        n_classes = int(data.labels.max()) + 1
        sizes = [n_train, n_val] + ([] if n_test is None else [n_test])
        if sum(sizes) > len(data.labels):
            raise ConfigurationError(
                f"{name} has {len(data.labels)} examples, fewer than the {sum(sizes)} asked for "
                f"(n_train={n_train}, n_val={n_val}, n_test={n_test})"
            )
        parts = class_balanced_split(data.labels, sizes, seed=seed)
        tr, va, te = parts[0], parts[1], parts[2]
        noisy, corrupted = corrupt_labels(data.labels[tr], n_classes, fraction=fraction, seed=seed)
        x, y = data.images.to(device), data.labels.to(device)
        return cls(
            x[tr.to(x.device)],
            noisy.to(x.device),
            x[va.to(x.device)],
            y[va.to(x.device)],
            x[te.to(x.device)],
            y[te.to(x.device)],
            corrupted=corrupted.to(x.device),
            n_classes=n_classes,
            batch_size=batch_size,
            val_batch_size=val_batch_size,
            seed=seed if batch_seed is None else batch_seed,
        )

    # -- the problem ---------------------------------------------------------------------

    def init(self, hparams: Tensor) -> Tensor:
        """``W_0 = 0`` (``C x (d+1)``), independent of ``λ``: ``B_0 = 0``."""
        return self.x_train.new_zeros(self.n_classes, self.x_train.shape[1])

    def initial_hparams(self) -> Tensor:
        """``λ = 0``: every example starts with weight ``σ(0) = ½``."""
        return self.x_train.new_zeros(self.x_train.shape[0])

    def inner_loss(self, params: Tensor, hparams: Tensor) -> Tensor:
        """``g(W, λ)``: the ``σ(λ_i)``-weighted mean training cross-entropy plus the ridge."""
        ce = F.cross_entropy(self.x_train @ params.T, self.y_train, reduction="none")
        lam = hparams if self._rows is None else hparams[self._rows]
        return torch.mean(torch.sigmoid(lam) * ce) + self.reg * torch.sum(params**2)

    def inner_grad(self, params: Tensor, hparams: Tensor) -> Tensor:
        """``∇_W g = (1/n) Σ_i σ(λ_i) (softmax(W x̃_i) - e_{y_i}) x̃_iᵀ + 2·reg·W``."""
        residual = torch.softmax(self.x_train @ params.T, dim=1) - self.onehot_train
        lam = hparams if self._rows is None else hparams[self._rows]
        weights = torch.sigmoid(lam) / self.x_train.shape[0]
        return (weights[:, None] * residual).T @ self.x_train + 2.0 * self.reg * params

    def outer_loss(self, params: Tensor, hparams: Tensor) -> Tensor:
        """``f(W, λ)``: the mean cross-entropy on the clean validation set."""
        return F.cross_entropy(self.x_val @ params.T, self.y_val)

    # -- minibatches ----------------------------------------------------------------------

    def n_batches(self, level: str) -> int:
        """Training (``"inner"``) or validation batches; 1 without a batch size."""
        parts = self._batches[level]
        return 1 if parts is None else len(parts)

    def on_batch(self, level: str, index: int) -> Hypercleaning:
        """The view on training or validation batch ``index`` (same ``λ``, all ``n`` entries).

        The training view's ``g`` is the ``σ(λ_i)``-weighted mean over the batch's rows
        plus the ridge, so its ``∇_λ`` is non-zero on those rows only.
        """
        parts = self._batches[level]
        if parts is None:
            return self
        key = (level, index)
        if key not in self._views:  # built once: a step's view costs a dict lookup
            rows = parts[index].to(self.y_train.device)
            view = copy.copy(self)
            view._views = {}
            if level == "inner":
                view.x_train, view.y_train = self.x_train[rows], self.y_train[rows]
                view.onehot_train, view._rows = self.onehot_train[rows], rows
            else:
                view.x_val, view.y_val = self.x_val[rows], self.y_val[rows]
            self._views[key] = view
        return self._views[key]

    def at_step(self, t: int) -> Hypercleaning:
        """Inner step ``t`` reads one training batch, drawn once per epoch from ``(seed, t)``."""
        n = self.n_batches("inner")
        return self if n == 1 else self.on_batch("inner", int(minibatch(n, 1, self.seed, t)[0]))

    # -- application metrics --------------------------------------------------------------

    def metrics(self, params: Tensor, hparams: Tensor) -> dict[str, float]:
        """Test and validation accuracy, validation loss and F1 of flagging corruption.

        Returns:
            ``test_acc`` (with a test set), ``val_acc`` (fractions), ``val_loss`` (``f``),
            and, when the corruption is known, ``f1@t`` for each threshold ``t`` in
            :data:`THRESHOLDS`: the F1 score of "``λ_i < t`` means example ``i`` is corrupted".
        """
        with torch.no_grad():
            W = params.detach()
            out = {}
            if self.x_test is not None and self.y_test is not None:
                out["test_acc"] = accuracy(self.x_test @ W.T, self.y_test)
            out["val_acc"] = accuracy(self.x_val @ W.T, self.y_val)
            out["val_loss"] = float(self.outer_loss(W, hparams))
            if self.corrupted is not None:
                lam = hparams.detach()
                for t in THRESHOLDS:
                    out[f"f1@{t:g}"] = f1_score(lam < t, self.corrupted)
        return out


def f1_score(predicted: Tensor, actual: Tensor) -> float:
    """F1 of a bool prediction against bool truth; 0 when nothing is predicted or true."""
    tp = int((predicted & actual).sum())
    denom = int(predicted.sum()) + int(actual.sum())
    return 2.0 * tp / denom if denom else 0.0
