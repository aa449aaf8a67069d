"""Built-in bilevel problems, and :data:`PROBLEMS`, the names a job spec uses for them.

The paper's toy problem (Section 4.1), its counterexample (Theorem 3.5), a quadratic with
closed-form hypergradients, and its experiments: hypercleaning (4.2), task interaction
(4.2) and one-shot learning (4.3).
"""

from core.problems.counterexample import Counterexample
from core.problems.hypercleaning import Hypercleaning
from core.problems.one_shot import OneShot, TaskBatch
from core.problems.quadratic import Quadratic
from core.problems.task_interaction import TaskInteraction
from core.problems.toy import Toy

__all__ = [
    "PROBLEMS",
    "Counterexample",
    "Hypercleaning",
    "OneShot",
    "Quadratic",
    "TaskBatch",
    "TaskInteraction",
    "Toy",
]

# Names a job spec uses for `problem.kind`, mapped to factories taking the spec's options.
PROBLEMS = {
    "toy": Toy,
    "toy_biased": lambda **kw: Toy(biased=True, **kw),
    "counterexample": Counterexample,
    "quadratic": Quadratic,
    "hypercleaning": Hypercleaning.from_dataset,
    "task_interaction": TaskInteraction.from_dataset,
}
