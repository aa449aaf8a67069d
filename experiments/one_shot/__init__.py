"""One-shot Omniglot (Section 4.3): Table 4 and Figure 7 for K-RMD against full RMD.

``bilevel reproduce one-shot --out DIR`` meta-trains the hyper-representation network of
Figure 8 (5-way 1-shot, 15 queries per class, T = 50, meta-batch 4, Adam on λ) once per
method (K-RMD for each ``--K``, full RMD for ``K = T``, optionally the ``T = 1`` short
horizon), evaluates it on 120 meta-test tasks and writes ``report.md`` (our table beside
the paper's Table 4, time per hyper-iteration, peak memory), ``results.json`` and the
Figure 7 analogues ``fig7_test_accuracy.png``, ``fig7_val_error.png``, ``fig7_cosine.png``,
``fig7_rel_error_vs_depth.png``, ``fig7_jacobian_norms.png`` plus ``outer_loss.png``.

The package, by what each module holds: ``config`` (options, :class:`Config`, the methods),
``budget`` (probed costs, the iteration budget), ``training`` (one method's meta-training),
``depth`` (the K sweep of Figure 7, right), ``figures``, ``report`` and ``experiment`` (the
run that ties them together).
"""

# `core` stays an attribute of this module: callers catch `one_shot.core.ConfigurationError`
import core
from experiments.one_shot.config import PAPER, SMOKE, add_arguments
from experiments.one_shot.experiment import run

__all__ = ["PAPER", "SMOKE", "add_arguments", "core", "run"]
