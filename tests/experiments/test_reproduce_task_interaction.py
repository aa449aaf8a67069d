"""`bilevel reproduce task-interaction` in its tiny smoke configuration (digits)."""

from __future__ import annotations

import argparse
import struct

import pytest

import core
from experiments import task_interaction


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    task_interaction.add_arguments(parser)
    return task_interaction.run(parser.parse_args(list(argv)))


def test_smoke_run_writes_table3_beside_the_paper_and_figure6(tmp_path, capsys):
    out = tmp_path / "ti"
    assert _run("--out", str(out), "--smoke", "--K", "1", "100") == 0
    header = (out / "fig6_task_interaction.png").read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", header[16:24])
    assert width > 800 and height > 500  # two rows of three panels
    report = (out / "report.md").read_text()
    rows = [r for r in report.splitlines() if r.startswith("| 10-task") or r.startswith("| many")]
    assert len(rows) == 4
    assert "| 61.11 ± 1.23 |" in rows[0] and "| 34.70 ± 0.64 |" in rows[3]
    for row in rows:
        mean = float(row.split(" | ")[2].split(" ± ")[0])
        assert 10.0 < mean <= 100.0  # a test accuracy in percent, better than chance
    assert "ResNet-18" in report and "early stopping" in report.lower()
    assert "task-interaction [" in capsys.readouterr().err


def test_bad_K_is_a_configuration_error(tmp_path):
    with pytest.raises(core.ConfigurationError, match=r"got \[101\]"):
        _run("--out", str(tmp_path), "--smoke", "--K", "101")
