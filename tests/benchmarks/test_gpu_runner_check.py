"""The service's GPU check runs on the CPU too (``--device cpu --small``), in seconds."""

from __future__ import annotations

import json
from importlib.metadata import entry_points
from importlib.util import find_spec

from benchmarks.service import gpu_runner_check
from tests.shared_data import require_omniglot


def test_gpu_runner_check_runs_small_on_cpu_with_eager_runs_that_agree(tmp_path):
    argv = ["--device", "cpu", "--small", "--data-dir", str(require_omniglot())]
    assert gpu_runner_check.main([*argv, "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "gpu_runner_check.json").read_text())
    one_shot = report["one_shot"]
    for run in (one_shot["graphed"], one_shot["eager"]):
        assert run["outcome"] == "succeeded" and run["graphed"] is False
        assert run["s_per_iteration"] > 0 and run["peak_bytes"] > 0
        assert 0 <= run["test_accuracy"] <= 1 and run["test_accuracy_ci95"] >= 0
    # on the CPU "auto" falls back to eager and says why; the flag's run says its own reason
    assert one_shot["graphed"]["graphed_reason"].startswith("device cpu")
    assert one_shot["eager"]["graphed_reason"] == "hypergradient.graphed is false"
    # two eager runs of one seed on the CPU: the same computation, bit for bit
    assert one_shot["agreement"] == {
        "outer_loss_max_rel_first_10": 0.0,
        "outer_loss_max_rel": 0.0,
        "hparams_rel": 0.0,
    }
    examples = {k: v for k, v in report["examples"].items() if k != "part_s"}
    assert len(examples) >= 8 and all(e["outcome"] == "succeeded" for e in examples.values())
    assert report["resume"]["hparams_equal_to_uninterrupted"] is True
    # a part whose pieces are missing says so rather than failing, and runs when they are not
    no_plugins = not entry_points(group="bilevel.problems")
    assert ("skipped" in report["plugins"]) == no_plugins
    no_peers = find_spec("higher") is None and find_spec("torchopt") is None
    assert ("skipped" in report["peers"]) == no_peers
