"""``bilevel study``: light imports, submit, the aggregate table, errors on one line."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from cli.study import format_table
from tests.cli.running import run_cli
from tests.cli.test_client import _PROBE
from tests.factories import tiny_spec


def _study_file(path, **grid):
    body = {"name": "sweep", "base": tiny_spec(iterations=4),
            "grid": grid or {"hypergradient.K": [1, 2], "seed": [0, 1]}}  # fmt: skip
    path.write_text(json.dumps(body))
    return str(path)


def _run(capsys, *argv):
    return run_cli(capsys, *argv, "--key", "blv_x_y", "--url", "http://x")


@pytest.mark.parametrize("action", ["submit", "status", "watch", "cancel", "list", "around"])
def test_study_commands_import_neither_the_server_nor_torch(action, tmp_path):
    argv = ["study", action]
    if action == "submit":
        argv.append(_study_file(tmp_path / "study.json"))
    elif action != "list":
        argv.append("some-id")
    argv += ["--url", "http://127.0.0.1:9", "--key", "blv_x_y"]
    proc = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True,
                          text=True, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["code"] == 2  # cannot reach the server: the command ran to its end
    assert result["heavy"] == []


def test_submit_prints_the_id_and_status_prints_one_row_per_K(state, api_server, capsys):
    code, out, _ = _run(capsys, "study", "submit", _study_file(state / "s.json"))
    assert code == 0
    sid = out.strip()
    assert uuid.UUID(sid)
    code, out, _ = _run(capsys, "study", "status", sid)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("sweep: queued, 0/4 ended (4 queued)")
    assert lines[1].split()[:2] == ["K", "done"]
    assert [line.split()[:2] for line in lines[2:]] == [["1", "0/2"], ["2", "0/2"]]


def test_a_bad_grid_is_one_line_naming_the_path_and_exit_2(state, api_server, capsys):
    path = _study_file(state / "s.json", **{"hypergradient.K": [1, 0]})
    code, _, err = _run(capsys, "study", "submit", path)
    assert code == 2
    assert err.count("\n") == 1
    assert "grid.hypergradient.K: value 0 is rejected" in err


def test_cancel_ends_every_queued_member(state, api_server, capsys):
    sid = _run(capsys, "study", "submit", _study_file(state / "s.json"))[1].strip()
    code, out, _ = _run(capsys, "study", "cancel", sid)
    assert code == 0
    assert out.startswith("sweep: cancelled, 4/4 ended (4 cancelled)")


def test_the_table_shows_mean_and_std_in_table_2s_layout():
    stat = {"final_outer_loss": {"mean": 0.25, "std": 0.05, "n": 3},
            "peak_bytes": {"mean": 2 * (1 << 20), "std": None, "n": 1}}  # fmt: skip
    study = {"group_by": ["hypergradient.K"],
             "table": [{"values": {"hypergradient.K": 5}, "members": 3, "succeeded": 3,
                        "stats": stat}]}  # fmt: skip
    head, row = format_table(study)
    assert head.split() == ["K", "done", "final_outer_loss", "s/iter", "peak", "MiB"]
    assert row.split() == ["5", "3/3", "0.25", "±", "0.05", "-", "2"]


@pytest.mark.parametrize("argv", [["create", "http://127.0.0.1/h"], ["list"],
                                  ["deliveries", "x"], ["delete", "x"]])  # fmt: skip
def test_webhook_commands_import_neither_the_server_nor_torch(argv):
    argv = ["webhooks", *argv, "--url", "http://127.0.0.1:9", "--key", "blv_x_y"]
    proc = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True,
                          text=True, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["code"] == 2
    assert result["heavy"] == []


def test_watch_draws_a_bar_over_the_members_then_the_table(state, api_server, capsys):
    sid = _run(capsys, "study", "submit", _study_file(state / "s.json"))[1].strip()
    _run(capsys, "study", "cancel", sid)
    code, out, err = _run(capsys, "study", "watch", sid, "--interval", "0.01")
    assert code == 1  # ended, but not succeeded
    assert "[" + "#" * 30 + "] 4/4 cancelled" in err
    assert out.splitlines()[1].split()[:2] == ["K", "done"]


def _search_file(path, **search):
    body = {"name": "tune", "base": tiny_spec(iterations=4),
            "search": {"params": {"outer.lr": {"type": "float", "low": 0.01, "high": 0.5,
                                               "log": True}},
                       "n_trials": 4, "max_concurrent": 2, **search}}  # fmt: skip
    path.write_text(json.dumps(body))
    return str(path)


def test_a_search_submits_and_status_says_no_member_has_finished(state, api_server, capsys):
    code, out, _ = _run(capsys, "study", "submit", _search_file(state / "s.json"))
    assert code == 0
    code, out, _ = _run(capsys, "study", "status", out.strip())
    lines = out.splitlines()
    assert lines[0].startswith("tune: queued, 0/2 ended (2 queued)")
    assert lines[1:3] == ["best (2 trials, 0 pruned):", "  (no member has finished yet)"]


def test_a_bad_search_is_one_line_naming_the_field_and_exit_2(state, api_server, capsys):
    path = _search_file(state / "s.json", sampler="annealing")
    code, _, err = _run(capsys, "study", "submit", path)
    assert code == 2 and err.count("\n") == 1
    assert "search.sampler" in err


def test_the_front_lists_each_member_of_it_with_its_objectives():
    study = {
        "search": {"objectives": [{"metric": "final_outer_loss"},
                                  {"metric": "s_per_iteration"}]},
        "best": [0, 2],
        "members": [
            {"position": p, "status": s, "objectives": o, "values": {"hypergradient.K": k},
             "job_id": f"job-{p}"}
            for p, s, o, k in [(0, "succeeded", [0.1, 0.5], 25), (1, "pruned", None, 5),
                               (2, "succeeded", [0.3, 0.1], 1)]
        ],
    }  # fmt: skip
    from cli.study import format_best

    lines = format_best(study)
    assert lines[0] == "pareto front (3 trials, 1 pruned):"
    assert lines[1].split() == ["#0", "final_outer_loss=0.1,", "s_per_iteration=0.5",
                                "[hypergradient.K=25]", "job-0"]  # fmt: skip
    assert lines[2].startswith("  #2 final_outer_loss=0.3, s_per_iteration=0.1")


def test_around_prints_the_new_study_and_status_says_what_warm_started_it(
    state, api_server, capsys
):
    spec = state / "job.json"
    spec.write_text(json.dumps(tiny_spec(iterations=4, name="base")))
    code, out, _ = _run(capsys, "submit", str(spec))
    job_id = out.strip().split()[0]
    code, out, _ = _run(capsys, "study", "around", job_id, "--trials", "3", "--pruner", "median")
    assert code == 0
    sid = out.strip()
    _, out, _ = _run(capsys, "study", "status", sid, "--json")
    study = json.loads(out)
    assert study["name"] == "around base" and study["search"]["n_trials"] == 3
    assert study["search"]["warm_start"]["jobs"] == [job_id]
    assert study["search"]["pruner"]["kind"] == "median"
    _, out, _ = _run(capsys, "study", "status", sid)
    # the job has not run: it is not shown to the sampler, and is counted
    assert "warm start: 0 earlier member(s) (skipped: 1 not succeeded)" in out.splitlines()


def test_around_an_unknown_job_is_one_line_and_exit_2(state, api_server, capsys):
    code, _, err = _run(capsys, "study", "around", str(uuid.uuid4()))
    assert code == 2 and err.count("\n") == 1
    assert "job" in err


def test_status_prints_the_importance_largest_first_with_bars():
    from cli.study import format_importance

    study = {
        "importance": {
            "evaluator": "ped_anova",
            "objective": "final_outer_loss",
            "trials": 12,
            "params": {"outer.lr": 0.75, "inner.steps": 0.25},
        }
    }
    lines = format_importance(study)
    assert lines[0] == "parameter importance (ped_anova, final_outer_loss, 12 complete trials):"
    assert lines[1].split() == ["outer.lr", "75.0%", "#" * 15]
    assert lines[2].split() == ["inner.steps", "25.0%", "#" * 5]
    assert format_importance({"importance": None}) == []
