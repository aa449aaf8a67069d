"""bilevel: one command line for the service, its clients and the reproductions.

Bad input ends with one readable line on stderr and exit code 2; nothing is half-written.
A closed pipe (``bilevel trace ID | head``) ends the command quietly, with the exit code of
a command killed by SIGPIPE (141).
Client commands (``status``, ``submit``, ...) never import torch: the reproductions and the
core library load only for the commands that use them.

This module is the parser and the dispatch; each command group is a module of its own:
:mod:`cli.server` (``serve``, ``worker``, ``migrate``), :mod:`cli.backup` (``backup``,
``restore``), :mod:`cli.traces` (``traces compact``), :mod:`cli.keys`, :mod:`cli.teams`,
:mod:`cli.pool`, :mod:`cli.problems`, :mod:`cli.datasets`, :mod:`cli.client` (``submit``,
``status``, ``watch``, ``trace``, ``cancel``, ``result``, ``hparams``), :mod:`cli.jobs`
(``jobs list``), :mod:`cli.run`, :mod:`cli.reproduce`,
:mod:`cli.study` (``study submit | list | status | watch | cancel``), :mod:`cli.webhooks` and
:mod:`cli.audit`.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Sequence

from cli import (
    audit,
    backup,
    client,
    datasets,
    jobs,
    keys,
    pool,
    problems,
    reproduce,
    run,
    server,
    study,
    teams,
    traces,
    webhooks,
)
from cli.errors import UsageError
from client.errors import ClientError

__all__ = ["add_commands", "build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error message (``bilevel: error: ...``) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def add_commands(commands: argparse._SubParsersAction, *, with_experiments: bool = False) -> None:
    """Add every command to ``bilevel``'s subparsers; each sets ``func(args) -> int``.

    Args:
        commands: the subparsers to add to (their parser class is used for nested ones).
        with_experiments: give ``reproduce`` its experiments (imports them, and torch).
    """
    reproduce.add_commands(commands, load=with_experiments)
    server.add_commands(commands)
    backup.add_commands(commands)
    keys.add_commands(commands)
    teams.add_commands(commands)
    traces.add_commands(commands)
    client.add_commands(commands)
    jobs.add_commands(commands)
    pool.add_commands(commands)
    problems.add_commands(commands)
    datasets.add_commands(commands)
    run.add_commands(commands)
    study.add_commands(commands)
    webhooks.add_commands(commands)
    audit.add_commands(commands)


def build_parser(with_experiments: bool = True) -> argparse.ArgumentParser:
    """The full parser; each subcommand sets ``func(args) -> int``.

    Args:
        with_experiments: import the reproductions to add their options (this loads torch);
            without it ``reproduce`` is listed with no experiment to choose.
    """
    parser = _Parser(prog="bilevel", description=(__doc__ or "").splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    add_commands(commands, with_experiments=with_experiments)
    return parser


def _closed_pipe() -> int:
    """The reader of stdout went away: what is still buffered goes nowhere (not a second
    BrokenPipeError at exit), and the code is a command's killed by SIGPIPE."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass  # a stdout without a file descriptor (a test's capture): nothing is buffered there
    return 141


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bilevel`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(with_experiments=argv[:1] == ["reproduce"])
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (UsageError, ClientError) as exc:
        # ClientError: the server refused (HTTP 4xx/5xx and its detail) or could not be reached
        sys.stderr.write(f"bilevel: error: {exc}\n")
        return 2
    except BrokenPipeError:
        return _closed_pipe()
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
