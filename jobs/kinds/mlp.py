"""A small tanh MLP with learned per-layer weight decay (and optionally example weights)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from jobs.kinds.base import DatasetInfo, ProblemKind, Sizes, SpecModel
from jobs.kinds.tables import DatasetRef

__all__ = ["MLP", "MLPSpec"]


class MLPSpec(SpecModel):
    """A small tanh MLP with learned per-layer weight decay (``layer_decay``, logs).

    ``example_weights`` also learns one weight per training example (``example_weights``,
    logits); ``inner.learn_lr`` learns the inner step size.
    """

    kind: Literal["mlp"]
    dataset: DatasetRef
    hidden: Annotated[
        list[Annotated[int, Field(ge=1, le=1024)]], Field(min_length=1, max_length=4)
    ] = [32]  # noqa: RUF012 (a pydantic field, copied per model)
    example_weights: bool = False
    init_decay: Annotated[float, Field(gt=0, le=1e3)] = 1e-3
    standardize: bool = True


class _MLP(ProblemKind):
    name = "mlp"
    options = MLPSpec
    factory = "worker.factories:mlp"
    reads_dataset = True
    batches = True

    def dataset(self, options: MLPSpec) -> tuple[str, str]:
        return "dataset", options.dataset

    def sizes(self, options: MLPSpec, inner: Any, data: DatasetInfo | None) -> Sizes | None:
        if data is None:
            return None
        d, n = data.n_features, data.rows["train"]
        r = min(inner.batch_size or n, n)
        widths = [d, *options.hidden, data.outputs]
        params = sum((a + 1) * b for a, b in zip(widths[:-1], widths[1:]))
        # the step's rows, the activations and their gradients, the parameters' gradients
        step = r * d + 4 * r * sum(widths[1:]) + 3 * params
        hparams = len(widths) - 1 + (n if options.example_weights else 0)
        return Sizes(state=params, step=step, hparams=hparams)


MLP = _MLP()
