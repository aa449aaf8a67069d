"""Task interaction on a data set with a task column (Section 4.2.2): one model per task."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from core.errors import ConfigurationError
from core.problems._inputs import with_bias
from core.problems._supervised import Splits, SupervisedProblem, check_positive

__all__ = ["MultiTask"]


class MultiTask(SupervisedProblem[Tensor, dict[str, Tensor]]):
    """``V`` linear models, one per task id of the data, coupled by a learned ``C``.

    Where :class:`core.problems.TaskInteraction` makes each class a task (as Franceschi et
    al. do), here each example carries its task ``τ_i`` (the data set's ``task_<split>``
    column) and task ``v`` has its own linear, logistic or softmax model
    ``W_v ∈ R^{k x (d+1)}``. With ``λ = {B, ν}``, ``C = softplus(B) + softplus(B)ᵀ`` and
    ``ρ = softplus(ν)`` (Appendix G.2)::

        g(W, λ) = (1/|B_t|) Σ_{i ∈ B_t} loss(W_{τ_i} x̃_i, y_i)
                  + Σ_{u,v} C_uv ||W_u - W_v||_F² + ρ Σ_v ||W_v||_F²
        f(W, λ) = (1/m) Σ_j loss(W_{τ_j} x̃_j, y_j)                (validation split)

    ``W_0 = 0`` (``B_0 = 0``), ``∇_λ f = 0``. The coupling is computed as
    ``2 Σ_u deg_u ||W_u||² - 2 Σ_uv C_uv <W_u, W_v>`` (``deg = C 1``), which needs no
    ``V x V x k x (d+1)`` difference tensor. The inner gradient is autograd's.

    Args:
        data: the splits.
        tasks: split name -> ``[n]`` int64 task ids, for every split of ``data``.
        coupling_init: every ``C_uv`` at the start; ``1/V`` by default (``λ_max(L) = 1``
            for any ``V``, as in :class:`core.problems.TaskInteraction`).
        rho_init: ``ρ`` at the start.
        batch_size: training rows per inner step (``None``: all).
        seed: seeds the minibatches.

    Raises:
        ConfigurationError: a split without task ids, ids out of range, bad initial values.
    """

    def __init__(
        self,
        data: Splits,
        tasks: dict[str, Tensor],
        *,
        coupling_init: float | None = None,
        rho_init: float = 0.01,
        batch_size: int | None = None,
        seed: int = 0,
    ):
        for split, x in data.x.items():
            ids = tasks.get(split)
            if ids is None or ids.shape != (x.shape[0],):
                raise ConfigurationError(
                    f"task_{split} must hold one task id per row of x_{split} ({x.shape[0]})"
                )
        n_tasks = int(tasks["train"].max()) + 1
        for split, ids in tasks.items():
            if split in data.x and (int(ids.min()) < 0 or int(ids.max()) >= n_tasks):
                raise ConfigurationError(
                    f"task_{split} has ids in [{int(ids.min())}, {int(ids.max())}]; "
                    f"task_train's tasks are 0..{n_tasks - 1}"
                )
        if coupling_init is not None:
            check_positive(coupling_init, "coupling_init")
        check_positive(rho_init, "rho_init")
        super().__init__(data, batch_size=batch_size, seed=seed)
        device = data.x["train"].device
        self.tasks = {s: tasks[s].long().to(device) for s in data.x}
        self.n_tasks = n_tasks
        self.coupling_init = coupling_init or 1.0 / n_tasks
        self.rho_init = rho_init
        self.xb = {s: with_bias(x) for s, x in data.x.items()}

    def coupling(self, hparams: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """``(C, ρ)`` from ``λ = {B, ν}``: ``C = softplus(B) + softplus(B)ᵀ``."""
        A = F.softplus(hparams["B"])
        return A + A.T, F.softplus(hparams["nu"])

    def _outputs(self, params: Tensor, xb: Tensor, task: Tensor) -> Tensor:
        """``W_{τ_i} x̃_i`` for each row: ``[n, k]``, from one ``[n, V k]`` product."""
        V, k, width = params.shape
        z = (xb @ params.reshape(V * k, width).T).reshape(xb.shape[0], V, k)
        return z[torch.arange(xb.shape[0], device=xb.device), task]

    # -- the problem ---------------------------------------------------------------------

    def init(self, hparams: dict[str, Tensor]) -> Tensor:
        """``W_0 = 0``: ``[V, k, d+1]``, independent of ``λ``."""
        return self.xb["train"].new_zeros(self.n_tasks, self.outputs, self.xb["train"].shape[1])

    def initial_hparams(self) -> dict[str, Tensor]:
        """Every ``C_uv = coupling_init`` (each ``A_uv`` half of it) and ``ρ = rho_init``."""
        like, V = self.xb["train"], self.n_tasks
        return {
            "B": like.new_full((V, V), _softplus_inverse(self.coupling_init / 2.0)),
            "nu": like.new_tensor(_softplus_inverse(self.rho_init)),
        }

    def inner_loss(self, params: Tensor, hparams: dict[str, Tensor]) -> Tensor:
        """``g(W, λ)`` on the current step's rows."""
        xb, task, y = self.xb["train"], self.tasks["train"], self.data.y["train"]
        if self.rows is not None:
            xb, task, y = xb[self.rows], task[self.rows], y[self.rows]
        losses = self.example_losses(self._outputs(params, xb, task), y)
        C, rho = self.coupling(hparams)
        flat = params.reshape(self.n_tasks, -1)
        gram = flat @ flat.T
        coupled = 2.0 * torch.sum(C.sum(dim=1) * gram.diagonal()) - 2.0 * torch.sum(C * gram)
        return losses.mean() + coupled + rho * torch.sum(params**2)

    def outer_loss(self, params: Tensor, hparams: dict[str, Tensor]) -> Tensor:
        """``f(W, λ)``: the mean loss on the validation split."""
        out = self._outputs(params, self.xb["val"], self.tasks["val"])
        return self.example_losses(out, self.data.y["val"]).mean()

    def metrics(self, params: Tensor, hparams: dict[str, Tensor]) -> dict[str, float]:
        """Accuracy or RMSE per split, ``val_loss``, the mean off-diagonal ``C_uv`` and ``ρ``."""
        out: dict[str, float] = {}
        with torch.no_grad():
            W = params.detach()
            for split, xb in self.xb.items():
                pred, y = self._outputs(W, xb, self.tasks[split]), self.data.y[split]
                if self.data.task == "regression":
                    rmse = math.sqrt(float(torch.mean((pred[:, 0] - y) ** 2)))
                    out[f"{split}_rmse"] = rmse * self.data.y_scale
                elif self.outputs == 1:
                    out[f"{split}_acc"] = float(((pred[:, 0] > 0).long() == y).double().mean())
                else:
                    out[f"{split}_acc"] = float((pred.argmax(dim=1) == y).double().mean())
            out["val_loss"] = float(self.outer_loss(W, hparams))
            C, rho = self.coupling({k: v.detach() for k, v in hparams.items()})
            off = C.sum() - C.diagonal().sum()
            out["mean_coupling"] = float(off) / max(1, self.n_tasks * (self.n_tasks - 1))
            out["rho"] = float(rho)
        return out


def _softplus_inverse(y: float) -> float:
    return y + math.log(-math.expm1(-y))
