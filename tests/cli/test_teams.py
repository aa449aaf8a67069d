"""``bilevel teams set | list`` on the store, and ``bilevel pool`` against a server."""

from __future__ import annotations

import pytest

from cli.main import main
from jobs import repo
from tests.cli.running import run_cli
from tests.factories import tiny_spec


def test_teams_set_and_list_show_weights_limits_and_which_are_defaults(state, capsys):
    assert run_cli(capsys, "keys", "create", "--team", "alpha")[0] == 0
    assert run_cli(capsys, "keys", "create", "--team", "beta")[0] == 0
    code, out, _ = run_cli(
        capsys, "teams", "set", "alpha", "--weight", "3", "--max-running-gpu", "2"
    )
    assert code == 0
    assert out.splitlines()[1] == "alpha\t3\t20 (default)\t2"
    code, out, _ = run_cli(capsys, "teams", "list")
    assert out.splitlines()[1:] == ["alpha\t3\t20 (default)\t2",
                                    "beta\t1 (default)\t20 (default)\t20 (default)"]  # fmt: skip
    code, out, _ = run_cli(capsys, "teams", "set", "alpha", "--weight", "default")
    assert out.splitlines()[1] == "alpha\t1 (default)\t20 (default)\t2"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["teams", "set", "alpha", "--weight", "0"], "argument --weight: must be > 0, got 0"),
        (["teams", "set", "alpha", "--max-running-cpu", "x"],
         "argument --max-running-cpu: must be an integer or 'default', got 'x'"),
        (["teams", "set", "nobody", "--weight", "2"], "no team 'nobody'"),
        (["teams", "set", "alpha"], "nothing to set: give --weight"),
    ],
)  # fmt: skip
def test_bad_team_settings_are_one_line_and_exit_2(state, capsys, argv, message):
    run_cli(capsys, "keys", "create", "--team", "alpha")
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(main(argv))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_pool_prints_the_teams_and_your_queued_jobs(state, api_server, capsys):
    with api_server.sessions.begin() as s:
        team = repo.ensure_team(s, "cli")
        from jobs.specs.job import parse_spec

        for _ in range(2):
            repo.create_job(s, team.id, parse_spec(tiny_spec()))
    code, out, _ = run_cli(capsys, "pool", "--key", "blv_x_y", "--url", "http://x")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[1].split()[:6] == ["cli", "cpu", "1", "0", "2", "20"]
    assert "0 live workers, 0 busy; oldest wait: cpu" in out
    queued = [line.split() for line in lines if line[:8].count("-") == 0 and len(line) > 36
              and line[8:9] == "-"]  # fmt: skip
    assert [q[3] for q in queued] == ["1", "2"]  # positions
    assert all(q[4] == "-" for q in queued)  # no live worker: no estimated start
