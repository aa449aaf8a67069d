"""Single-loop bilevel methods: the inner iterate and ``λ`` move together, one batch a step.

Next to the estimators (:mod:`core.estimators`, which unroll ``T`` inner steps per
hypergradient, Eqs. 4-8), these methods track ``w*(λ)`` (and, for SOBA/SABA, the linear
system of Eq. 11) across outer steps::

    out = core.fit_single_loop(problem, hparams, core.SOBA(inner_lr=0.1, outer_lr=0.01),
                               iterations=1000)
"""

from typing import Any

from core.errors import ConfigurationError
from core.single_loop.f2sa import F2SA
from core.single_loop.loop import SingleLoopMethod, fit_single_loop, inner_params
from core.single_loop.saba import SABA
from core.single_loop.soba import SOBA

__all__ = [
    "F2SA",
    "SABA",
    "SINGLE_LOOP",
    "SOBA",
    "SingleLoopMethod",
    "fit_single_loop",
    "inner_params",
    "make_single_loop",
]

SINGLE_LOOP: dict[str, type[SingleLoopMethod]] = {cls.name: cls for cls in (SOBA, SABA, F2SA)}


def make_single_loop(method: str, **options: Any) -> SingleLoopMethod:
    """Build the method a job spec names, e.g. ``make_single_loop("soba", inner_lr=0.1)``.

    Raises:
        ConfigurationError: unknown method, or an option it does not take.
    """
    try:
        cls = SINGLE_LOOP[method]
    except KeyError:
        raise ConfigurationError(
            f"method must be one of {sorted(SINGLE_LOOP)}, got {method!r}"
        ) from None
    try:
        return cls(**options)
    except TypeError as exc:
        raise ConfigurationError(f"bad options {options!r} for method {method!r}: {exc}") from None
