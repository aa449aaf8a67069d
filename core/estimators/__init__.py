"""Hypergradient estimators, one method per module behind the :class:`Estimator` interface."""

from core.estimators.base import Estimator, HypergradientResult
from core.estimators.checkpointed import Checkpointed
from core.estimators.compiled import Compiled
from core.estimators.forward import Forward
from core.estimators.full import Full
from core.estimators.graphed import Graphed
from core.estimators.implicit import Implicit
from core.estimators.metered import Metered
from core.estimators.registry import ESTIMATORS, make_estimator
from core.estimators.truncated import Truncated

__all__ = [
    "ESTIMATORS",
    "Checkpointed",
    "Compiled",
    "Estimator",
    "Forward",
    "Full",
    "Graphed",
    "HypergradientResult",
    "Implicit",
    "Metered",
    "Truncated",
    "make_estimator",
]
