"""`bilevel reproduce hypercleaning` in its tiny smoke configuration (digits)."""

from __future__ import annotations

import argparse
import json
import struct

import pytest

import core
from experiments import hypercleaning


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    hypercleaning.add_arguments(parser)
    return hypercleaning.run(parser.parse_args(list(argv)))


def _png_size(path):
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def test_smoke_run_writes_report_beside_the_paper_figures_and_run_files(tmp_path, capsys):
    out = tmp_path / "hc"
    assert _run("--out", str(out), "--smoke", "--K", "1", "5") == 0
    for name in ("fig5_exact_grad_norm", "fig_upper_loss", "fig_f1"):
        width, height = _png_size(out / f"{name}.png")
        assert width > 400 and height > 300
    report = (out / "report.md").read_text()
    table2 = report.split("## Table 2")[1].split("##")[0]
    rows = [r for r in table2.splitlines() if r.startswith("| 1 |") or r.startswith("| 5 |")]
    assert len(rows) == 2
    assert "| 87.50 |" in rows[0] and "| 88.05 |" in rows[1]  # the paper's numbers beside ours
    assert "**mean**" in report and "--smoke" in report
    for method in ("1-RMD", "5-RMD", "full RMD", "checkpointed RMD"):
        assert f"| {method} |" in report
    run = json.loads((out / "runs" / "K5.json").read_text())
    assert run["history"]["iteration"] == [1, 2, 3, 4]
    assert len(run["f1"]["f1@-3"]) == 4 and run["checkpoints"]["iteration"] == [0, 2, 4]
    assert run["final"]["val_loss"] < run["checkpoints"]["val_loss"][0]  # it learned
    assert "hypercleaning K=5 [" in capsys.readouterr().err


def test_memory_table_shows_truncation_holding_less_than_full_rmd(tmp_path):
    out = tmp_path / "hc"
    _run("--out", str(out), "--smoke", "--K", "1", "--iterations", "1")
    rows = {
        line.split(" | ")[0].strip("| "): float(line.split(" | ")[-1].strip(" |"))
        for line in (out / "report.md").read_text().split("## Cost per method")[1].splitlines()
        if line.startswith("| ") and "method" not in line
    }
    assert rows["1-RMD"] < rows["checkpointed RMD"] < rows["full RMD"]


def test_a_run_continued_from_its_saved_state_equals_an_uninterrupted_one(tmp_path):
    _run("--out", str(tmp_path / "a"), "--smoke", "--K", "1")
    _run("--out", str(tmp_path / "b"), "--smoke", "--K", "1", "--iterations", "2")
    _run("--out", str(tmp_path / "b"), "--smoke", "--K", "1", "--iterations", "4")
    a, b = (json.loads((tmp_path / d / "runs" / "K1.json").read_text()) for d in "ab")
    assert a["lambda"] == b["lambda"] and a["history"]["outer_loss"] == b["history"]["outer_loss"]
    assert a["checkpoints"] == b["checkpoints"] and a["f1"] == b["f1"]


def test_bad_options_are_configuration_errors(tmp_path):
    with pytest.raises(core.ConfigurationError, match=r"\[1, T=10\], got \[11\]"):
        _run("--out", str(tmp_path), "--smoke", "--K", "11")
    with pytest.raises(core.ConfigurationError, match="MNIST data not found"):
        _run("--out", str(tmp_path), "--data-dir", str(tmp_path), "--iterations", "1")
