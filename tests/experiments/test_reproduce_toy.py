"""`bilevel reproduce toy` in a tiny configuration: files, tables and the bound."""

from __future__ import annotations

import struct

from cli.main import main


def _png_size(path):
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def test_reproduce_toy_writes_four_figures_and_a_report(tmp_path, capsys):
    out = tmp_path / "toy"
    rc = main(["reproduce", "toy", "--out", str(out), "--K", "1", "100", "--iterations", "12"])
    assert rc == 0
    for name in ("fig1_prop31", "fig2_descent_ratio", "fig3_biased", "fig4_convergence"):
        width, height = _png_size(out / f"{name}.png")
        assert width > 400 and height > 200
    report = (out / "report.md").read_text()
    bound_table = report.split("## Figure 1")[1].split("## Figure 4")[0]
    rows = [
        line for line in bound_table.splitlines() if line.startswith("| ") and "K |" not in line
    ]
    assert len(rows) == 8 and all(row.endswith("| yes |") for row in rows)
    assert "--iterations 12" in report
    assert "toy [" in capsys.readouterr().err  # progress was shown
