"""A random strongly convex quadratic with closed-form hypergradients."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field
from pydantic_core import InitErrorDetails

from jobs.kinds.base import ProblemKind, Sizes, SpecModel, field_error

__all__ = ["QUADRATIC", "QuadraticSpec"]


class QuadraticSpec(SpecModel):
    """A random strongly convex quadratic with closed-form hypergradients."""

    kind: Literal["quadratic"]
    dim: Annotated[int, Field(ge=1, le=4096)] = 8
    n_hparams: Annotated[int, Field(ge=1, le=1024)] = 3
    mu: Annotated[float, Field(gt=0, le=1e3)] = 0.2
    L: Annotated[float, Field(gt=0, le=1e3)] = 1.0
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0
    rho: Annotated[float, Field(ge=0, le=1e3)] = 0.0
    init_depends_on_hparams: bool = False
    structured: bool = False


class _Quadratic(ProblemKind):
    name = "quadratic"
    options = QuadraticSpec
    factory = "worker.factories:core_problem"

    def checks(self, options: QuadraticSpec, inner: Any) -> list[InitErrorDetails]:
        p, errors = options, []
        if p.mu > p.L:
            errors.append(
                field_error(("problem", "mu"), p.mu, f"mu must be <= L={p.L}, got {p.mu}")
            )
        if p.structured and (p.dim < 2 or p.n_hparams < 2):
            message = f"structured needs dim >= 2 and n_hparams >= 2, got {p.dim}, {p.n_hparams}"
            errors.append(field_error(("problem", "structured"), p.structured, message))
        if inner.learn_lr and p.structured:
            message = "learn_lr is not available with structured hparams"
            errors.append(field_error(("inner", "learn_lr"), True, message))
        return errors

    def sizes(self, options: QuadraticSpec, inner: Any, data: Any) -> Sizes:
        # the Hessian-vector products of one step: a few vectors of dim
        return Sizes(state=options.dim, step=4 * options.dim + options.n_hparams,
                     hparams=options.n_hparams)  # fmt: skip


QUADRATIC = _Quadratic()
