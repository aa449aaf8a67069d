"""The client commands: light imports, their settings, and the server as the judge of a spec."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest
from pydantic import ValidationError

from cli.settings import DEFAULT_URL, KEY_FILE, ClientSettings
from jobs import parse_spec
from jobs.specs.job import field_errors
from tests.cli.running import run_cli
from tests.factories import tiny_spec

HEAVY = ("fastapi", "sqlalchemy", "torch", "matplotlib", "starlette")

# Runs one command to its end in a fresh interpreter (against a port nothing listens on,
# so the command's own imports load too), then names the heavy packages it loaded.
_PROBE = f"""
import json, sys
from cli.main import main
code = main(sys.argv[1:])
heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r}))
print(json.dumps({{"code": code, "heavy": heavy}}))
"""


def _spec_file(path, **over):
    path.write_text(json.dumps(tiny_spec(**over)))
    return str(path)


@pytest.mark.parametrize(
    "argv",
    [
        ["submit", "JOB"],
        ["status", "some-id"],
        ["watch", "some-id"],
        ["trace", "some-id"],
        ["cancel", "some-id"],
        ["pool"],
        ["problems"],
        ["datasets", "upload", "JOB", "--name", "n"],
        ["datasets", "list"],
        ["datasets", "rm", "some-id"],
    ],
    ids=lambda argv: "-".join(a for a in argv[:2] if a != "JOB"),
)
def test_client_commands_import_neither_the_server_nor_torch_nor_matplotlib(argv, tmp_path):
    argv = [_spec_file(tmp_path / "job.json") if a == "JOB" else a for a in argv]
    argv += ["--url", "http://127.0.0.1:9", "--key", "blv_x_y", "--state-dir", str(tmp_path)]
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["code"] == 2  # cannot reach the server: the command ran to its end
    assert result["heavy"] == []


def test_client_settings_read_the_same_variables_with_the_same_defaults(tmp_path, monkeypatch):
    for name in ("BILEVEL_URL", "BILEVEL_API_KEY", "BILEVEL_STATE_DIR", "STATE_DIR"):
        monkeypatch.delenv(name, raising=False)
    default = ClientSettings()
    assert default.url == DEFAULT_URL
    assert default.api_key is None
    assert default.key_file == (tmp_path.home() / ".local/share/bilevel" / KEY_FILE).resolve()
    monkeypatch.setenv("BILEVEL_URL", "http://server:1234")
    monkeypatch.setenv("BILEVEL_API_KEY", "blv_a_b")
    monkeypatch.setenv("BILEVEL_STATE_DIR", str(tmp_path))
    settings = ClientSettings()
    assert settings.url == "http://server:1234"
    assert settings.resolved_key() == "blv_a_b"
    assert settings.key_file == tmp_path.resolve() / KEY_FILE


def test_without_a_key_the_client_uses_the_embedded_key_file(state, monkeypatch):
    (state / KEY_FILE).write_text("blv_from_file\n")
    assert ClientSettings().resolved_key() == "blv_from_file"
    monkeypatch.setenv("BILEVEL_API_KEY", "blv_from_env")
    assert ClientSettings().resolved_key() == "blv_from_env"


def test_no_key_anywhere_is_one_line_and_exit_2(state, capsys):
    code, _, err = run_cli(capsys, "status", "x", "--url", "http://127.0.0.1:9")
    assert code == 2
    assert err == "bilevel: error: no API key: pass --key or set BILEVEL_API_KEY\n"


def test_submit_sends_the_spec_and_prints_the_job_id(state, api_server, capsys):
    path = _spec_file(state / "job.json")
    code, out, _ = run_cli(capsys, "submit", path, "--key", "blv_x_y", "--url", "http://x")
    assert code == 0
    assert uuid.UUID(out.strip())


# the upload's long read timeout is for a real server; Starlette's TestClient warns about it
@pytest.mark.filterwarnings("ignore:You should not use the 'timeout' argument")
def test_an_idempotency_key_makes_a_rerun_create_return_the_first_resource(
    state, api_server, capsys
):
    from tests.dataset_files import digits_arrays, npz_bytes

    study = {"name": "sweep", "base": tiny_spec(iterations=4), "grid": {"seed": [0, 1]}}
    (state / "study.json").write_text(json.dumps(study))
    data = state / "digits.npz"
    data.write_bytes(npz_bytes(digits_arrays(n_train=100, n_val=50, seed=3)))
    for argv in (["submit", _spec_file(state / "job.json")],
                 ["study", "submit", str(state / "study.json")],
                 ["datasets", "upload", str(data)]):  # fmt: skip
        ids = set()
        for _ in range(2):  # a rerun after a lost answer
            code, out, err = run_cli(capsys, *argv, "--idempotency-key", "rerun-1",
                                     "--key", "blv_x_y", "--url", "http://x")  # fmt: skip
            assert code == 0, err
            ids.add(out.splitlines()[0])
        assert len(ids) == 1, argv
    code, out, _ = run_cli(capsys, "study", "list", "--key", "blv_x_y", "--url", "http://x")
    assert code == 0 and len(out.splitlines()) == 1, out
    code, out, _ = run_cli(capsys, "datasets", "list", "--key", "blv_x_y", "--url", "http://x")
    assert code == 0 and out.count("digits") == 1, out


def test_the_compute_budget_is_the_servers_not_the_clients(state, api_server, capsys, monkeypatch):
    monkeypatch.setenv("BILEVEL_MAX_INNER_STEPS", "100")  # the client's environment only
    api_server.settings["max_inner_steps"] = 10_000
    path = _spec_file(state / "job.json", iterations=20, steps=10)
    code, _, err = run_cli(capsys, "submit", path, "--key", "blv_x_y", "--url", "http://x")
    assert code == 0, err


def test_an_invalid_spec_is_the_servers_field_errors_on_one_line(state, api_server, capsys):
    spec = tiny_spec()
    spec["inner"]["steps"] = 0
    path = state / "job.json"
    path.write_text(json.dumps(spec))
    code, _, err = run_cli(capsys, "submit", str(path), "--key", "blv_x_y", "--url", "http://x")
    with pytest.raises(ValidationError) as local:
        parse_spec(spec)
    (expected,) = field_errors(local.value)
    assert code == 2
    assert err == f"bilevel: error: {path}: inner.steps: {expected['message']}\n"


def test_a_file_that_is_not_json_is_refused_before_sending(state, capsys):
    path = state / "job.json"
    path.write_text("{x")
    code, _, err = run_cli(capsys, "submit", str(path), "--key", "blv_x_y", "--url", "http://x")
    assert code == 2
    invalid = "Invalid JSON: key must be a string at line 1 column 2"
    assert err == f"bilevel: error: {path}: (body): {invalid}\n"


def test_other_server_errors_name_the_status_and_the_detail(state, api_server, capsys):
    job = str(uuid.uuid4())
    code, _, err = run_cli(capsys, "status", job, "--key", "blv_x_y", "--url", "http://x")
    assert code == 2
    assert err == f"bilevel: error: HTTP 404: no job {job}\n"
