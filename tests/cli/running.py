"""Running the ``bilevel`` command in the test's process, with what it printed."""

from __future__ import annotations

from cli.main import main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """``bilevel ARGV...``: its exit code, stdout and stderr (earlier output dropped)."""
    capsys.readouterr()
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err
