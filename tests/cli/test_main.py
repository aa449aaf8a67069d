"""The command line's error contract: one readable line on stderr and exit code 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cli.main import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["reproduce", "toy", "--out", "x", "--K", "0"],
            "--K values must be in [1, T=100], got [0]",
        ),
        (
            ["reproduce", "toy", "--out", "x", "--iterations", "0"],
            "--iterations must be >= 1, got 0",
        ),
        (
            ["reproduce", "toy", "--out", "x", "--K", "two"],
            "argument --K: invalid int value: 'two'",
        ),
        (["reproduce", "nonsense"], "invalid choice: 'nonsense'"),
        (["reproduce", "toy"], "the following arguments are required: --out"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(main(argv))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and err.startswith("bilevel")
    assert not (tmp_path / "x").exists()  # nothing half-written


def test_console_entry_point_runs_as_a_module():
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "reproduce", "toy", "--out", "x", "--K", "101"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "bilevel: error: --K values must be in [1, T=100], got [101]"
