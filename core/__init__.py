"""Hypergradients through unrolled inner optimizers (Shaban et al., AISTATS 2019).

The public surface::

    import core
    res = core.hypergradient(problem, hparams, core.GradientDescent(steps=100, lr=0.1),
                             core.Truncated(K=5))
    out = core.fit(problem, hparams, dynamics, core.Truncated(K=1), iterations=500)
"""

from core import problems
from core.auto_k import TruncationChoice, choose_truncation, step_bytes
from core.diagnostics import SavedTensorMeter, compare, jacobian_norms, prop31_bound
from core.dynamics import GradientDescent
from core.errors import BilevelError, ConfigurationError, DivergenceError, NonConvergenceError
from core.estimators import (
    ESTIMATORS,
    Checkpointed,
    Compiled,
    Estimator,
    Forward,
    Full,
    Graphed,
    HypergradientResult,
    Implicit,
    Metered,
    Truncated,
    make_estimator,
)
from core.hypergradient import hypergradient
from core.outer import FitResult, FitState, fit
from core.problem import BilevelProblem
from core.single_loop import (
    F2SA,
    SABA,
    SINGLE_LOOP,
    SOBA,
    SingleLoopMethod,
    fit_single_loop,
    make_single_loop,
)

__all__ = [
    "ESTIMATORS",
    "F2SA",
    "SABA",
    "SINGLE_LOOP",
    "SOBA",
    "BilevelError",
    "BilevelProblem",
    "Checkpointed",
    "Compiled",
    "ConfigurationError",
    "DivergenceError",
    "Estimator",
    "FitResult",
    "FitState",
    "Forward",
    "Full",
    "GradientDescent",
    "Graphed",
    "HypergradientResult",
    "Implicit",
    "Metered",
    "NonConvergenceError",
    "SavedTensorMeter",
    "SingleLoopMethod",
    "Truncated",
    "TruncationChoice",
    "choose_truncation",
    "compare",
    "fit",
    "fit_single_loop",
    "hypergradient",
    "jacobian_norms",
    "make_estimator",
    "make_single_loop",
    "problems",
    "prop31_bound",
    "step_bytes",
]
