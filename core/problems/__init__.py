"""Built-in bilevel problems, and :data:`PROBLEMS`, the names a job spec uses for them.

The paper's toy problem (Section 4.1), its counterexample (Theorem 3.5), a quadratic with
closed-form hypergradients, and its experiments: hypercleaning (4.2), task interaction
(4.2) and one-shot learning (4.3); and the families over a user's data set
(:class:`Splits`): per-feature penalties and a small MLP with learned weight decay.
"""

from core.problems._supervised import Splits, SupervisedProblem
from core.problems.batches import minibatch
from core.problems.counterexample import Counterexample
from core.problems.feature_regularization import FeatureRegularization
from core.problems.hypercleaning import Hypercleaning
from core.problems.mlp import MLP
from core.problems.multitask import MultiTask
from core.problems.one_shot import OneShot, TaskBatch
from core.problems.one_shot_tasks import OneShotSplits
from core.problems.quadratic import Quadratic
from core.problems.quadratic_pair import QuadraticPair
from core.problems.task_interaction import TaskInteraction
from core.problems.toy import Toy

__all__ = [
    "MLP",
    "PROBLEMS",
    "Counterexample",
    "FeatureRegularization",
    "Hypercleaning",
    "MultiTask",
    "OneShot",
    "OneShotSplits",
    "Quadratic",
    "QuadraticPair",
    "Splits",
    "SupervisedProblem",
    "TaskBatch",
    "TaskInteraction",
    "Toy",
    "minibatch",
]

# Names a job spec uses for `problem.kind`, mapped to factories taking the spec's options.
PROBLEMS = {
    "toy": Toy,
    "toy_biased": lambda **kw: Toy(biased=True, **kw),
    "counterexample": Counterexample,
    "quadratic": Quadratic,
    "hypercleaning": Hypercleaning.from_dataset,
    "task_interaction": TaskInteraction.from_dataset,
    # over a data set's arrays: the worker builds the Splits and passes them as `data`
    "feature_regularization": FeatureRegularization,
    "mlp": MLP,
    # Omniglot's three splits: the worker trains on `train` and evaluates on `test`
    "one_shot": OneShotSplits.from_omniglot,
}
