"""bilevel: one command line for the service, its clients and the reproductions.

Bad input ends with one readable line on stderr and exit code 2; nothing is half-written.
Client commands (``status``, ``submit``, ...) never import torch: the reproductions and the
core library load only for the commands that use them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from cli.errors import UsageError

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error message (``bilevel: error: ...``) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def build_parser(with_experiments: bool = True) -> argparse.ArgumentParser:
    """The full parser; each subcommand sets ``func(args) -> int``.

    Args:
        with_experiments: import the reproductions to add their options (this loads torch);
            without it ``reproduce`` lists the experiments' names only.
    """
    from cli.service import add_commands
    from experiments import EXPERIMENTS

    parser = _Parser(prog="bilevel", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    reproduce = commands.add_parser(
        "reproduce", help="rerun one of the paper's experiments and write a report"
    )
    which = reproduce.add_subparsers(dest="experiment", required=True, parser_class=_Parser)
    for name, path in EXPERIMENTS.items():
        if not with_experiments:
            which.add_parser(name)
            continue
        module = importlib.import_module(path)
        sub = which.add_parser(name, help=module.__doc__.splitlines()[0])
        module.add_arguments(sub)
        sub.set_defaults(func=module.run)
    add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bilevel`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(with_experiments=argv[:1] == ["reproduce"])
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        sys.stderr.write(f"bilevel: error: {exc}\n")
        return 2
    except Exception as exc:
        # core's errors, if core was loaded at all: bad arguments are usage errors (exit 2),
        # divergence and non-convergence are failures of the run (exit 1).
        errors = sys.modules.get("core.errors")
        if errors is None or not isinstance(exc, errors.BilevelError):
            raise
        if isinstance(exc, errors.ConfigurationError):
            sys.stderr.write(f"bilevel: error: {exc}\n")
            return 2
        sys.stderr.write(f"bilevel: {type(exc).__name__}: {exc}\n")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
