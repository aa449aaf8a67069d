"""`bilevel reproduce one-shot` in its smoke configuration, on the real Omniglot files."""

from __future__ import annotations

import argparse
import json
import os
import struct
from pathlib import Path

import pytest

from experiments import one_shot

DATA = Path(__file__).parents[2].parent / "shared" / "data"
FIGURES = (
    "fig7_test_accuracy",
    "fig7_val_error",
    "fig7_cosine",
    "fig7_rel_error_vs_depth",
    "fig7_jacobian_norms",
    "outer_loss",
)


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    one_shot.add_arguments(parser)
    return parser.parse_args(argv)


def test_smoke_run_writes_report_beside_table_4_and_figure_7(tmp_path, capsys):
    if not (DATA / "omniglot" / "images_background.npz").is_file():
        reason = f"Omniglot not found in {DATA / 'omniglot'}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must provide ../shared/data")
        pytest.skip(reason)
    out = tmp_path / "one-shot"
    args = _parse(["--out", str(out), "--data-dir", str(DATA), "--smoke", "--seed", "3"])
    assert one_shot.run(args) == 0
    for name in FIGURES:
        width, height = _png_size(out / f"{name}.png")
        assert width > 300 and height > 200
    report = (out / "report.md").read_text()
    assert "--smoke" in report and "--seed 3" in report
    table = report.split("## Table 4")[1].split("## Memory")[0]
    ours = [r for r in table.splitlines() if r.startswith(("| 1-RMD", "| Full RMD"))]
    assert len(ours) == 2 + 3  # our two methods, then the paper's rows (two 1-RMD, one full)
    assert "| 95.6 | 5K | 0.4 |" in ours[0]  # beside the paper's row of the same method
    results = json.loads((out / "results.json").read_text())
    runs = results["runs"]
    assert set(runs) == {"1-RMD", "Full RMD"}
    for r in runs.values():
        assert 0.0 <= r["final"]["query_accuracy"] <= 1.0 and r["final"]["accuracy_ci95"] >= 0
        assert r["sec_per_iter"] > 0 and r["saved_bytes"] > 0
        assert len(r["history"]["outer_loss"]) == r["iterations"] == 2
    # full RMD holds the whole unrolled graph, 1-RMD one step of it
    assert runs["Full RMD"]["saved_bytes"] > runs["1-RMD"]["saved_bytes"]
    cos = [c for c in runs["1-RMD"]["history"]["cosine"] if c == c]
    assert cos and all(-1.0 <= c <= 1.0 for c in cos)
    depth = results["depth"]
    assert depth["K"] == [1, 2, 3] and all(e >= 0 for e in depth["regularized"] + depth["rho=0"])
    # K = T is h_0 itself; against d_λ f it misses exactly the B_0 share
    assert depth["regularized vs h_0"][-1] == 0.0
    assert depth["regularized"][-1] == pytest.approx(depth["regularized B_0 share"])
    # ||A_t|| at every step of the smoke unroll, and the report says whether they contract
    assert depth["t"] == [1, 2, 3]
    assert all(n > 0 for n in depth["regularized ||A_t||"] + depth["rho=0 ||A_t||"])
    assert "||A_t||, regularised" in report
    assert ("stability edge" in report) == (max(depth["regularized ||A_t||"]) > 1)
    assert ("descent direction" in report) == (min(cos) > 0)  # the verdict on Figure 7, plot 3
    assert "one-shot [" in capsys.readouterr().err  # progress was shown


def test_missing_data_is_one_clear_error(tmp_path):
    args = _parse(["--out", str(tmp_path / "o"), "--data-dir", str(tmp_path), "--smoke"])
    with pytest.raises(one_shot.core.ConfigurationError, match="Omniglot not found"):
        one_shot.run(args)


def test_bad_K_is_rejected_before_any_work(tmp_path):
    args = _parse(["--out", str(tmp_path / "o"), "--K", "0", "50"])
    with pytest.raises(
        one_shot.core.ConfigurationError, match=r"--K values must be in \[1, T=50\]"
    ):
        one_shot.run(args)


def test_default_data_dir_is_shared_data_beside_the_checkout(monkeypatch):
    monkeypatch.delenv("BILEVEL_DATA_DIR", raising=False)
    assert _parse(["--out", "x"]).data_dir == Path(one_shot.__file__).parents[3] / "shared" / "data"
    monkeypatch.setenv("BILEVEL_DATA_DIR", "/somewhere")
    assert _parse(["--out", "x"]).data_dir == Path("/somewhere")
