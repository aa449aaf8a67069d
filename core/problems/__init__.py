"""Built-in bilevel problems: the paper's toy problem, its counterexample, a quadratic, and
its experiments (hypercleaning, task interaction, one-shot learning)."""

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
