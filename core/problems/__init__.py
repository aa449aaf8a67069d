"""Built-in bilevel problems: the paper's toy problem, its counterexample and a quadratic."""

from core.problems.counterexample import Counterexample
from core.problems.quadratic import Quadratic
from core.problems.toy import Toy

__all__ = ["PROBLEMS", "Counterexample", "Quadratic", "Toy"]

# Names a job spec uses for `problem.kind`, mapped to factories taking the spec's options.
PROBLEMS = {
    "toy": Toy,
    "toy_biased": lambda **kw: Toy(biased=True, **kw),
    "counterexample": Counterexample,
    "quadratic": Quadratic,
}
