"""``bilevel``: one command line for reproductions (and, later, the service).

Bad input ends with one readable line on stderr and exit code 2; nothing is half-written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from core.errors import BilevelError, ConfigurationError

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error message (``bilevel: error: ...``) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    """The full parser; each subcommand sets ``func(args) -> int``."""
    from experiments import EXPERIMENTS

    parser = _Parser(prog="bilevel", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    reproduce = commands.add_parser(
        "reproduce", help="rerun one of the paper's experiments and write a report"
    )
    which = reproduce.add_subparsers(dest="experiment", required=True, parser_class=_Parser)
    for name, module in EXPERIMENTS.items():
        sub = which.add_parser(name, help=module.__doc__.splitlines()[0])
        module.add_arguments(sub)
        sub.set_defaults(func=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bilevel`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigurationError as exc:
        sys.stderr.write(f"bilevel: error: {exc}\n")
        return 2
    except BilevelError as exc:
        sys.stderr.write(f"bilevel: {type(exc).__name__}: {exc}\n")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
