"""Estimators chosen by data: the names a job spec uses, mapped to their classes."""

from __future__ import annotations

from typing import Any

from core.errors import ConfigurationError
from core.estimators.base import Estimator
from core.estimators.checkpointed import Checkpointed
from core.estimators.forward import Forward
from core.estimators.full import Full
from core.estimators.implicit import Implicit
from core.estimators.truncated import Truncated

__all__ = ["ESTIMATORS", "make_estimator"]

ESTIMATORS: dict[str, type[Estimator]] = {
    cls.name: cls for cls in (Full, Truncated, Forward, Checkpointed, Implicit)
}


def make_estimator(method: str, **options: Any) -> Estimator:
    """Build the estimator a job spec names, e.g. ``make_estimator("truncated", K=5)``.

    Raises:
        ConfigurationError: unknown method, or an option it does not take.
    """
    try:
        cls = ESTIMATORS[method]
    except KeyError:
        raise ConfigurationError(
            f"method must be one of {sorted(ESTIMATORS)}, got {method!r}"
        ) from None
    try:
        return cls(**options)
    except TypeError as exc:
        raise ConfigurationError(f"bad options {options!r} for method {method!r}: {exc}") from None
