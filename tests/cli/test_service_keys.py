"""``bilevel keys`` with scopes, the embedded owner's operator key, and the CLI's budget check."""

from __future__ import annotations

import json

import pytest

from jobs.specs.budget import BudgetLimits, budget_errors
from jobs.store import repo
from tests.cli.running import run_cli
from tests.conftest import KEY_SECRET
from tests.factories import tiny_spec

SECRET = KEY_SECRET.encode()


def test_keys_create_admin_and_operator_and_list_shows_the_scope(state, capsys):
    code, admin, _ = run_cli(capsys, "keys", "create", "--team", "ops", "--admin")
    assert code == 0 and admin.startswith("blv_")
    code, plain, _ = run_cli(capsys, "keys", "create", "--team", "ops", "--name", "ci")
    code, operator, _ = run_cli(capsys, "keys", "create", "--team", "ops", "--operator")
    assert code == 0 and operator.startswith("blv_")
    code, listed, _ = run_cli(capsys, "keys", "list", "--team", "ops")
    rows = [line.split("\t") for line in listed.splitlines()]
    assert rows[0] == ["prefix", "team", "name", "created", "state", "scope", "secret"]
    assert [(r[0], r[2], r[5], r[6]) for r in rows[1:]] == [
        (admin.split("_")[1], "", "admin", "current"),
        (plain.split("_")[1], "ci", "team", "current"),
        (operator.split("_")[1], "", "operator", "current"),
    ]
    with pytest.raises(SystemExit) as exit_:
        run_cli(capsys, "keys", "create", "--team", "ops", "--admin", "--operator")
    assert exit_.value.code == 2
    assert "--operator: not allowed with argument --admin" in capsys.readouterr().err


def test_keys_list_shows_which_keys_a_rotation_has_not_moved_yet(state, capsys, monkeypatch):
    code, key, _ = run_cli(capsys, "keys", "create", "--team", "ops")
    new = "n" * 40
    monkeypatch.setenv("BILEVEL_KEY_SECRET", new)
    monkeypatch.setenv("BILEVEL_KEY_SECRET_PREVIOUS", KEY_SECRET)
    _, listed, _ = run_cli(capsys, "keys", "list")
    assert listed.splitlines()[1].split("\t")[6] == "previous"
    from cli.store import open_store

    _, sessions = open_store(type("Args", (), {"state_dir": str(state)})())
    with sessions.begin() as s:  # one use through the API would do the same
        assert repo.verify_key(s, key.strip(), secret=new.encode(), previous=SECRET).rehashed
    _, listed, _ = run_cli(capsys, "keys", "list")
    assert listed.splitlines()[1].split("\t")[6] == "current"
    monkeypatch.setenv("BILEVEL_KEY_SECRET_PREVIOUS", "short")
    code, _, err = run_cli(capsys, "serve")
    assert code == 2 and "BILEVEL_KEY_SECRET_PREVIOUS must have at least 32" in err


def test_serve_refuses_the_distributed_mode_without_a_key_secret(state, capsys, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    monkeypatch.delenv("BILEVEL_KEY_SECRET")
    code, _, err = run_cli(capsys, "serve")
    assert code == 2 and err.count("\n") == 1 and "BILEVEL_KEY_SECRET" in err


def test_the_embedded_owner_key_is_the_operators_and_an_old_one_is_promoted(state):
    from cli.store import ensure_local_key, open_store

    settings, sessions = open_store(type("Args", (), {"state_dir": str(state)})())
    key = ensure_local_key(settings, sessions)
    with sessions() as s:
        assert repo.verify_key(s, key, secret=SECRET).operator
    # a store from before scopes: the owner's key file holds a team-scoped key
    with sessions.begin() as s:
        repo.set_api_key_scope(s, key.split("_")[1], "team")
    assert ensure_local_key(settings, sessions) is None  # no new key...
    with sessions() as s:
        assert repo.verify_key(s, key, secret=SECRET).operator  # ...the old one promoted


def test_submit_checks_the_compute_budget_with_the_apis_message(
    state, api_server, capsys, monkeypatch
):
    monkeypatch.setenv("BILEVEL_MAX_INNER_STEPS", "100")
    path = state / "job.json"
    path.write_text(json.dumps(tiny_spec(iterations=20, steps=10)))
    code, _, err = run_cli(capsys, "submit", str(path), "--key", "blv_x_y", "--url", "http://x")
    from jobs import parse_spec

    (expected,) = budget_errors(parse_spec(tiny_spec(iterations=20, steps=10)),
                                BudgetLimits(max_inner_steps=100))  # fmt: skip
    assert code == 2 and err.count("\n") == 1
    assert f"outer.iterations: {expected['type'].message_template}" in err


def test_serve_refuses_several_workers_in_the_embedded_mode(state, capsys):
    code, _, err = run_cli(capsys, "serve", "--workers", "2")
    assert code == 2 and err.count("\n") == 1
    assert "--workers 2 needs the distributed mode" in err


def test_serve_runs_several_api_processes_in_the_distributed_mode(pg_url, redis_url, tmp_path):
    import os
    import subprocess
    import sys

    import httpx

    from tests.factories import free_port, wait_ready

    port = free_port()
    env = {**os.environ, "DATABASE_URL": pg_url, "BROKER_URL": redis_url,
           "BILEVEL_QUEUE_PREFIX": f"serve-{port}"}  # fmt: skip
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", "--workers", "2", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        assert wait_ready(url, proc, 60), (tmp_path / "serve.log").read_text()
        assert httpx.get(f"{url}/v1/jobs").status_code == 401  # the app, not just a socket
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
    started = (tmp_path / "serve.log").read_text().count("Started server process")
    assert started == 2, (tmp_path / "serve.log").read_text()


def test_keys_revoke_refuses_the_teams_last_admin_key_as_the_api_does(state, capsys):
    _, admin, _ = run_cli(capsys, "keys", "create", "--team", "ops", "--admin")
    _, plain, _ = run_cli(capsys, "keys", "create", "--team", "ops")
    prefix = admin.split("_")[1]
    code, out, err = run_cli(capsys, "keys", "revoke", prefix)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and f"key {prefix}" in err and "last admin key" in err
    # a team key goes; the admin key goes once another admin key exists
    assert run_cli(capsys, "keys", "revoke", plain.split("_")[1])[0] == 0
    _, second, _ = run_cli(capsys, "keys", "create", "--team", "ops", "--admin")
    assert run_cli(capsys, "keys", "revoke", prefix)[0] == 0
    code, _, err = run_cli(capsys, "keys", "revoke", second.split("_")[1])
    assert code == 2 and "last admin key" in err
    _, listed, _ = run_cli(capsys, "keys", "list", "--team", "ops")
    states = {r.split("\t")[0]: r.split("\t")[4] for r in listed.splitlines()[1:]}
    assert states == {prefix: "revoked", plain.split("_")[1]: "revoked",
                      second.split("_")[1]: "active"}  # fmt: skip
