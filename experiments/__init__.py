"""Reproductions of the paper's experiments: each module writes figures and a report.

Every module here has a docstring whose first line is its help text, and two functions:
``add_arguments(parser)`` and ``run(args) -> int``. ``bilevel reproduce NAME`` imports the
module :data:`EXPERIMENTS` names only when it is asked for, so the rest of the command line
starts without torch.
"""

import matplotlib

matplotlib.use("Agg")  # figures are files; no display is needed or wanted

EXPERIMENTS = {
    "toy": "experiments.toy",
    "hypercleaning": "experiments.hypercleaning",
    "task-interaction": "experiments.task_interaction",
    "one-shot": "experiments.one_shot",
}
