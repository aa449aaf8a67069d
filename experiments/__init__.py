"""Reproductions of the paper's experiments: each module writes figures and a report.

Every module here has a docstring whose first line is its help text, and two functions:
``add_arguments(parser)`` and ``run(args) -> int``. ``bilevel reproduce NAME`` finds them
through :data:`EXPERIMENTS`.
"""

import matplotlib

matplotlib.use("Agg")  # figures are files; no display is needed or wanted

from experiments import toy

EXPERIMENTS = {"toy": toy}
