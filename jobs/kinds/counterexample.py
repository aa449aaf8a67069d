"""Theorem 3.5's scalar counterexample."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from jobs.kinds.base import ProblemKind, Sizes, SpecModel

__all__ = ["COUNTEREXAMPLE", "CounterexampleSpec"]


class CounterexampleSpec(SpecModel):
    """Theorem 3.5's scalar counterexample."""

    kind: Literal["counterexample"]
    lam0: Annotated[float, Field(ge=-1e3, le=1e3)] = 2.0
    w0: Annotated[float, Field(ge=-1e3, le=1e3)] = 1.0


class _Counterexample(ProblemKind):
    name = "counterexample"
    options = CounterexampleSpec
    factory = "worker.factories:core_problem"

    def sizes(self, options: Any, inner: Any, data: Any) -> Sizes:
        return Sizes(state=2, step=16, hparams=2)


COUNTEREXAMPLE = _Counterexample()
