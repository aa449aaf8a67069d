"""Learning task interactions (Section 4.2.2, Appendix G.2): a learned coupling of V models."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from core.data import (
    FASHION_MNIST_DEBIAN_DIR,
    LabeledData,
    class_balanced_split,
    load_digits,
    load_fashion_mnist,
    load_mnist,
)
from core.errors import ConfigurationError
from core.problem import BilevelProblem
from core.problems._inputs import accuracy, check_labelled_sets, with_bias

__all__ = ["DATASETS", "TaskInteraction", "load_task_data"]

DATASETS = ("mnist", "fashion-mnist", "digits", "omniglot")


class TaskInteraction(BilevelProblem[Tensor, dict[str, Tensor]]):
    """V linear models, one per task (class), coupled by a learned similarity matrix ``C``.

    As in Franceschi et al. (2017), whose setting the paper follows, task ``v`` is class
    ``v`` and ``w_v ∈ R^{d+1}`` is row ``v`` of a multinomial logistic regression
    ``W ∈ R^{V x (d+1)}`` (bias column appended). With ``λ = {B, ν}``::

        C = A + Aᵀ,  A = softplus(B),  ρ = softplus(ν)                   (Appendix G.2)
        g(W, λ) = (1/n) Σ_i CE(W x̃_i, y_i) + Σ_{i,j} C_ij ‖w_i - w_j‖² + ρ Σ_v ‖w_v‖²
        f(W, λ) = (1/m) Σ_j CE(W x̃_j, y_j)                   (validation cross-entropy)

    ``W_0 = 0``. Since ``C`` is symmetric the coupling is ``2 tr(Wᵀ L W)`` with the graph
    Laplacian ``L = diag(C 1) - C``, so ``∇_W g = (1/n) (softmax - Y)ᵀ X̃ + 4 L W + 2ρ W``
    (:meth:`inner_grad`). Its curvature grows like ``4 λ_max(L) ≤ 8 max_i Σ_j C_ij``: the
    default :meth:`initial_hparams` set every ``C_ij = 1/V`` (``λ_max(L) = 1`` for any V), so
    that the paper's step ``γ = 0.1`` is stable for 10 and for 100 tasks alike.

    Args:
        x_train, y_train, x_val, y_val, x_test, y_test: features ``[N, d]`` and labels in
            ``0..V-1`` of the three sets.
        n_tasks: ``V``; by default one more than the largest label.
        coupling_init: the initial ``C_ij`` of :meth:`initial_hparams`; ``1/V`` by default.
        rho_init: the initial ``ρ``.

    Raises:
        ConfigurationError: mismatched shapes or dtypes.

    Example:
        >>> p = TaskInteraction.from_dataset("digits", n_train=30, n_val=30, n_tasks=3,
        ...                                  dtype=torch.float64)
        >>> sorted(p.initial_hparams())
        ['B', 'nu']
    """

    def __init__(
        self,
        x_train: Tensor,
        y_train: Tensor,
        x_val: Tensor,
        y_val: Tensor,
        x_test: Tensor,
        y_test: Tensor,
        *,
        n_tasks: int | None = None,
        coupling_init: float | None = None,
        rho_init: float = 0.01,
    ):
        sets = {"train": (x_train, y_train), "val": (x_val, y_val), "test": (x_test, y_test)}
        implied = check_labelled_sets(sets)
        self.n_tasks = n_tasks or implied
        if coupling_init is not None and coupling_init <= 0:
            raise ConfigurationError(f"coupling_init must be > 0, got {coupling_init!r}")
        if rho_init <= 0:
            raise ConfigurationError(f"rho_init must be > 0, got {rho_init!r}")
        self.coupling_init = coupling_init or 1.0 / self.n_tasks
        self.rho_init = rho_init
        self.x_train, self.x_val, self.x_test = (with_bias(x) for x, _ in sets.values())
        self.y_train, self.y_val, self.y_test = (y.long() for _, y in sets.values())
        self.onehot_train = F.one_hot(self.y_train, self.n_tasks).to(x_train.dtype)

    @classmethod
    def from_dataset(
        cls,
        name: str,
        data_dir: str | Path | None = None,
        *,
        n_tasks: int | None = None,
        n_train: int = 50,
        n_val: int = 50,
        n_test: int | None = None,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device | None = None,
        coupling_init: float | None = None,
        rho_init: float = 0.01,
    ) -> TaskInteraction:
        """Few examples per task from a real data set, as in Appendix G.2.

        ``n_train`` and ``n_val`` class-balanced examples are drawn (seeded; the paper's
        ``m``), the test set is the rest of the chosen classes (or ``n_test`` of it).

        Args:
            name: ``"mnist"``, ``"fashion-mnist"``, ``"digits"`` (10 classes; ``n_tasks``
                keeps the first ones) or ``"omniglot"`` (``n_tasks`` characters, 100 by
                default, drawn at random with ``seed``; 20 drawings each, resized to 28x28).
            data_dir: the data folder; required for MNIST and Omniglot.
            n_tasks: ``V``.
            n_train: training examples (the inner problem's).
            n_val: validation examples (the outer problem's).
            n_test: test examples; ``None`` for all the rest.
            seed: seeds the choice of characters and the split.
            dtype: of every tensor.
            device: where every tensor lives.
            coupling_init: the initial ``C_ij``, as for the constructor.
            rho_init: the initial ``ρ``, as for the constructor.

        Raises:
            ConfigurationError: unknown name, missing data, sizes that do not fit.
        """
        data = load_task_data(name, data_dir, n_tasks=n_tasks, seed=seed, dtype=dtype)
        return cls.from_data(
            data, n_tasks=n_tasks, n_train=n_train, n_val=n_val, n_test=n_test, seed=seed,
            device=device, coupling_init=coupling_init, rho_init=rho_init,
        )  # fmt: skip

    @classmethod
    def from_data(
        cls,
        data: LabeledData,
        *,
        n_tasks: int | None = None,
        n_train: int = 50,
        n_val: int = 50,
        n_test: int | None = None,
        seed: int = 0,
        device: str | torch.device | None = None,
        coupling_init: float | None = None,
        rho_init: float = 0.01,
    ) -> TaskInteraction:
        """:meth:`from_dataset` on data already loaded (:func:`load_task_data`).

        Draws one split per trial without reading the files again.
        """
        V = int(data.labels.max()) + 1
        if n_tasks is not None and n_tasks != V:
            if not 2 <= n_tasks <= V:
                raise ConfigurationError(f"n_tasks must be in [2, {V}], got {n_tasks}")
            keep = data.labels < n_tasks
            data = LabeledData(data.images[keep], data.labels[keep])
            V = n_tasks
        sizes = [n_train, n_val] + ([] if n_test is None else [n_test])
        if sum(sizes) > len(data.labels):
            raise ConfigurationError(
                f"{V} tasks have {len(data.labels)} examples, fewer than the {sum(sizes)} "
                f"asked for (n_train={n_train}, n_val={n_val}, n_test={n_test})"
            )
        tr, va, te = class_balanced_split(data.labels, sizes, seed=seed)[:3]
        x, y = data.images.to(device), data.labels.to(device)
        tr, va, te = (i.to(x.device) for i in (tr, va, te))
        return cls(
            x[tr], y[tr], x[va], y[va], x[te], y[te],
            n_tasks=V, coupling_init=coupling_init, rho_init=rho_init,
        )  # fmt: skip

    # -- the problem ---------------------------------------------------------------------

    def coupling(self, hparams: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """``(C, ρ)`` from ``λ = {B, ν}``: ``C = softplus(B) + softplus(B)ᵀ``."""
        A = F.softplus(hparams["B"])
        return A + A.T, F.softplus(hparams["nu"])

    def init(self, hparams: dict[str, Tensor]) -> Tensor:
        """``W_0 = 0`` (one row of ``d+1`` weights per task), independent of ``λ``."""
        return self.x_train.new_zeros(self.n_tasks, self.x_train.shape[1])

    def initial_hparams(self) -> dict[str, Tensor]:
        """Every ``C_ij = coupling_init`` (each ``A_ij`` half of it) and ``ρ = rho_init``."""
        V, like = self.n_tasks, self.x_train
        b = _softplus_inverse(self.coupling_init / 2.0)
        return {
            "B": like.new_full((V, V), b),
            "nu": like.new_tensor(_softplus_inverse(self.rho_init)),
        }

    def inner_loss(self, params: Tensor, hparams: dict[str, Tensor]) -> Tensor:
        """Training cross-entropy plus ``Σ_ij C_ij ||w_i - w_j||²`` and ``ρ ||W||²``."""
        C, rho = self.coupling(hparams)
        ce = F.cross_entropy(self.x_train @ params.T, self.y_train)
        diff = params[:, None, :] - params[None, :, :]  # w_i - w_j, V x V x (d+1)
        return ce + torch.sum(C * torch.sum(diff**2, dim=2)) + rho * torch.sum(params**2)

    def inner_grad(self, params: Tensor, hparams: dict[str, Tensor]) -> Tensor:
        """``(1/n)(softmax(X̃Wᵀ) - Y)ᵀ X̃ + 4 (diag(C1) - C) W + 2ρW``."""
        C, rho = self.coupling(hparams)
        residual = torch.softmax(self.x_train @ params.T, dim=1) - self.onehot_train
        laplacian_w = C.sum(dim=1, keepdim=True) * params - C @ params
        return (
            residual.T @ self.x_train / self.x_train.shape[0]
            + 4.0 * laplacian_w
            + 2.0 * rho * params
        )

    def outer_loss(self, params: Tensor, hparams: dict[str, Tensor]) -> Tensor:
        """The mean cross-entropy on the validation set."""
        return F.cross_entropy(self.x_val @ params.T, self.y_val)

    def metrics(self, params: Tensor, hparams: dict[str, Tensor]) -> dict[str, float]:
        """``test_acc``, ``val_acc``, ``val_loss``, the mean off-diagonal ``C_ij`` and ``ρ``."""
        with torch.no_grad():
            W = params.detach()
            C, rho = self.coupling({k: v.detach() for k, v in hparams.items()})
            off = C.sum() - C.diagonal().sum()
            return {
                "test_acc": accuracy(self.x_test @ W.T, self.y_test),
                "val_acc": accuracy(self.x_val @ W.T, self.y_val),
                "val_loss": float(F.cross_entropy(self.x_val @ W.T, self.y_val)),
                "mean_coupling": float(off) / max(1, self.n_tasks * (self.n_tasks - 1)),
                "rho": float(rho),
            }


def load_task_data(
    name: str,
    data_dir: str | Path | None = None,
    *,
    n_tasks: int | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> LabeledData:
    """Flattened images and labels of a data set named in :data:`DATASETS`.

    For ``"omniglot"`` the labels are ``n_tasks`` (default 100) characters drawn at random
    with ``seed``, 20 drawings each, resized to 28x28 by :func:`core.data.omniglot.load_omniglot`.

    Raises:
        ConfigurationError: unknown name, missing data directory or files.
    """
    if name == "mnist":
        if data_dir is None:
            raise ConfigurationError("mnist needs data_dir (the folder of its IDX files)")
        return load_mnist(data_dir, "all", dtype=dtype)
    if name == "fashion-mnist":
        return load_fashion_mnist(data_dir or FASHION_MNIST_DEBIAN_DIR, "all", dtype=dtype)
    if name == "digits":
        return load_digits(dtype=dtype)
    if name == "omniglot":
        if data_dir is None:
            raise ConfigurationError("omniglot needs data_dir (the folder with omniglot/)")
        from core.data.omniglot import load_omniglot  # the heaviest loader: only on demand

        images = load_omniglot(data_dir, seed=seed).images
        V = n_tasks or 100
        if not 2 <= V <= images.shape[0]:
            raise ConfigurationError(f"n_tasks must be in [2, {images.shape[0]}], got {V}")
        gen = torch.Generator().manual_seed(seed)
        chars = torch.randperm(images.shape[0], generator=gen)[:V]
        chosen = images[chars].to(dtype)  # V x 20 x 28 x 28
        labels = torch.arange(V).repeat_interleave(chosen.shape[1])
        return LabeledData(chosen.reshape(V * chosen.shape[1], -1), labels)
    raise ConfigurationError(f"dataset must be one of {DATASETS}, got {name!r}")


def _softplus_inverse(y: float) -> float:
    return y + math.log(-math.expm1(-y))
