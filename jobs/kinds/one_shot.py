"""One-shot classification on Omniglot with a learned hyper-representation (Section 4.2.3)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field
from pydantic_core import InitErrorDetails

from jobs.kinds.base import ProblemKind, Sizes, SpecModel, field_error

__all__ = ["OMNIGLOT_DRAWINGS", "ONE_SHOT", "OneShotSpec"]

#: Omniglot's drawings per character
OMNIGLOT_DRAWINGS = 20
# the task-specific conv layers see 7x7 maps, then 3x3 (28x28 after two poolings)
_MAPS = 7 * 7 + 3 * 3


class OneShotSpec(SpecModel):
    """One-shot classification on Omniglot with a learned hyper-representation (Sec. 4.2.3).

    Figure 8's network: two shared conv layers (the hyper-representation ``λ``), two
    task-specific conv layers and a ``ways``-way classifier (``w``) of ``width`` kernels per
    layer, on ``meta_batch`` tasks of ``ways`` classes with ``shots`` training and
    ``queries`` validation examples each, drawn afresh every hyper-iteration
    (``outer.iterations`` of them) from the 1200 meta-training characters. The inner step
    size is always learned (``log_lr``, App. G.3). At the end the learned ``λ`` is evaluated
    on ``eval_tasks`` tasks of the 323 meta-test characters: ``metrics.test_accuracy`` with
    the half-width of its 95% interval, ``metrics.test_accuracy_ci95``. Omniglot is read
    from the worker's ``BILEVEL_DATA_DIR``.
    """

    kind: Literal["one_shot"]
    ways: Annotated[int, Field(ge=2, le=20)] = 5
    shots: Annotated[int, Field(ge=1, le=10)] = 1
    # shots + queries <= OMNIGLOT_DRAWINGS: checked by the kind's checks()
    queries: Annotated[int, Field(ge=1, le=19)] = 15
    meta_batch: Annotated[int, Field(ge=1, le=32)] = 4
    width: Annotated[int, Field(ge=1, le=128)] = 64
    eval_tasks: Annotated[int, Field(ge=1, le=2000)] = 120
    rho_init: Annotated[float, Field(gt=0, le=1e3)] = 0.1
    regularize: bool = True


class _OneShot(ProblemKind):
    name = "one_shot"
    options = OneShotSpec
    factory = "worker.one_shot:one_shot"

    def checks(self, options: OneShotSpec, inner: Any) -> list[InitErrorDetails]:
        p = options
        if p.shots + p.queries <= OMNIGLOT_DRAWINGS:
            return []
        message = (
            f"shots + queries must be <= {OMNIGLOT_DRAWINGS} (Omniglot's drawings per "
            f"character), got {p.shots} + {p.queries}"
        )
        return [field_error(("problem", "queries"), p.queries, message)]

    def sizes(self, options: OneShotSpec, inner: Any, data: Any) -> Sizes:
        p, w = options, options.width
        per_task = 2 * (9 * w * w + w) + p.ways * (w + 1)  # conv3, conv4, the classifier
        params = p.meta_batch * per_task
        hparams = 9 * w + 9 * w * w + 2 * w + per_task + 4
        # conv, pooling, batch-norm and ReLU maps of the support images, per layer
        step = 8 * p.meta_batch * p.ways * p.shots * w * _MAPS + 4 * params
        return Sizes(state=params, step=step, hparams=hparams)


ONE_SHOT = _OneShot()
