"""Reproductions of the paper's experiments: each module writes figures and a report.

Every module here has a docstring whose first line is its help text, and two functions:
``add_arguments(parser, data_dir=None)`` (``data_dir``: the caller's data-directory setting,
the default of ``--data-dir``) and ``run(args) -> int``. ``bilevel reproduce NAME`` imports the
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
    "fast-methods": "experiments.fast_methods",
}


def data_dir_setting() -> str | None:
    """``BILEVEL_DATA_DIR`` (:class:`experiments.settings.ReproduceSettings`), if set.

    Read only where a caller passes no ``data_dir`` of its own to ``add_arguments``.
    """
    from experiments.settings import ReproduceSettings

    data_dir = ReproduceSettings().data_dir
    return None if data_dir is None else str(data_dir)
