"""``bilevel audit``: the team's audit trail from the server, one line per event."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.cli.running import run_cli
from tests.cli.test_client import _PROBE
from tests.cli.test_study import _run


def test_audit_lists_the_teams_events_newest_first_and_filters(state, api_server, capsys):
    api_server.settings = {"webhook_allow": ["127.0.0.0/8"]}
    hook = _run(capsys, "webhooks", "create", "http://127.0.0.1:9/h")[1].splitlines()[0]
    assert _run(capsys, "webhooks", "delete", hook)[0] == 0
    code, out, _ = _run(capsys, "audit")
    assert code == 0
    head, *rows = out.splitlines()
    assert head.split("\t")[:3] == ["time", "action", "team"]
    assert [r.split("\t")[1] for r in rows] == ["webhook.delete", "webhook.create"]
    created = rows[1].split("\t")
    assert created[2:5] == ["cli", "c11 (cli)", f"webhook {hook}"]
    assert created[6] == 'url: null -> "http://127.0.0.1:9/h", description: null -> ""'
    code, out, _ = _run(capsys, "audit", "--action", "webhook.create")
    assert [r.split("\t")[1] for r in out.splitlines()[1:]] == ["webhook.create"]


def test_store_side_keys_and_teams_commands_are_in_the_servers_audit(
    api_server, capsys, monkeypatch, tmp_path
):
    # `bilevel keys` and `bilevel teams` work on the server's own store, not through it
    monkeypatch.setenv("BILEVEL_STATE_DIR", str(tmp_path / "server"))
    code, key, _ = run_cli(capsys, "keys", "create", "--team", "cli", "--name", "ops")
    assert code == 0
    prefix = key.strip().split("_")[1]
    assert run_cli(capsys, "teams", "set", "cli", "--max-running-cpu", "4")[0] == 0
    assert run_cli(capsys, "keys", "revoke", prefix)[0] == 0
    code, out, _ = _run(capsys, "audit")  # GET /v1/audit
    assert code == 0
    rows = [r.split("\t") for r in out.splitlines()[1:]]
    assert [r[1] for r in rows] == ["key.revoke", "team.update", "key.create"]
    # the team's own events, by the operator on the store: no key, no address
    assert all(r[2] == "cli" and r[3] == "operator" and r[5] == "-" for r in rows)
    assert [r[4] for r in rows] == [f"key {prefix}", "team cli", f"key {prefix}"]
    assert rows[1][6] == "max_running_cpu: null -> 4"
    assert rows[2][6] == 'name: null -> "ops", scope: null -> "team"'


def test_a_bad_time_is_one_line_and_exit_code_2(state, api_server, capsys):
    code, _, err = _run(capsys, "audit", "--since", "yesterday")
    assert code == 2 and err.count("\n") == 1
    assert "HTTP 422" in err and "query.since" in err


def test_audit_imports_neither_the_server_nor_torch():
    argv = ["audit", "--url", "http://127.0.0.1:9", "--key", "blv_x_y"]
    proc = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True,
                          text=True, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["code"] == 2 and result["heavy"] == []
