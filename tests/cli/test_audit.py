"""``bilevel audit``: the team's audit trail from the server, one line per event."""

from __future__ import annotations

import json
import subprocess
import sys

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
