"""``bilevel reproduce NAME``: rerun one of the paper's experiments and write a report.

The experiments (matplotlib, torch) are imported only when the parser is built for this
command: every other command lists ``reproduce`` without loading them.
"""

from __future__ import annotations

import argparse
import importlib

__all__ = ["add_commands"]

_HELP = "rerun one of the paper's experiments and write a report"


def add_commands(commands: argparse._SubParsersAction, *, load: bool) -> None:
    """Add ``reproduce``; with ``load``, one subcommand per experiment, with its options.

    Args:
        commands: ``bilevel``'s subparsers.
        load: import :mod:`experiments` and each experiment's module (matplotlib and torch);
            without it ``reproduce`` is listed, with no experiment to choose.
    """
    reproduce = commands.add_parser("reproduce", help=_HELP)
    if not load:
        return
    from experiments import EXPERIMENTS

    which = reproduce.add_subparsers(
        dest="experiment", required=True, parser_class=commands._parser_class
    )
    for name, path in EXPERIMENTS.items():
        module = importlib.import_module(path)
        sub = which.add_parser(name, help=(module.__doc__ or name).splitlines()[0])
        module.add_arguments(sub)
        sub.set_defaults(func=module.run)
