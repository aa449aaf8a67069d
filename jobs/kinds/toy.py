"""Section 4.1's two-dimensional toy problem, with the unbiased and the biased ``f``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from jobs.kinds.base import ProblemKind, Sizes, SpecModel

__all__ = ["TOY", "TOY_BIASED", "ToyBiasedSpec", "ToySpec"]

_Coord = Annotated[float, Field(ge=-1e3, le=1e3)]
_Point2 = Annotated[list[_Coord], Field(min_length=2, max_length=2)]
# a handful of scalars: the parameters, their gradient, the losses
_SCALARS = Sizes(state=2, step=16, hparams=2)


class ToySpec(SpecModel):
    """Section 4.1's two-dimensional problem."""

    kind: Literal["toy"]
    w0: _Point2 = [2.0, 2.0]  # noqa: RUF012 (a pydantic field, copied per model)


class ToyBiasedSpec(SpecModel):
    """The toy problem with the biased upper objective ``f~``."""

    kind: Literal["toy_biased"]
    w0: _Point2 = [2.0, 2.0]  # noqa: RUF012 (a pydantic field, copied per model)


class _Toy(ProblemKind):
    factory = "worker.factories:core_problem"

    def sizes(self, options: Any, inner: Any, data: Any) -> Sizes:
        return _SCALARS


class _ToyKind(_Toy):
    name = "toy"
    options = ToySpec


class _ToyBiasedKind(_Toy):
    name = "toy_biased"
    options = ToyBiasedSpec


TOY, TOY_BIASED = _ToyKind(), _ToyBiasedKind()
