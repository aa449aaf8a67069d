"""The stumbles of a first session with the CLI, each with its exact message (issue 22)."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.cli.running import run_cli
from tests.factories import tiny_spec


def _run(capsys, *argv):
    return run_cli(capsys, *argv, "--key", "blv_x_y", "--url", "http://x")


def _write(path, body) -> str:
    path.write_text(json.dumps(body))
    return str(path)


def test_an_unknown_field_gets_the_nearest_known_name(state, api_server, capsys):
    spec = tiny_spec()
    spec["outer"]["iteratons"] = spec["outer"].pop("iterations")
    path = _write(state / "job.json", spec)
    code, out, err = _run(capsys, "submit", path)
    assert (code, out) == (2, "")
    assert err == (
        f"bilevel: error: {path}: outer.iterations: Field required; outer.iteratons: Extra "
        "inputs are not permitted (did you mean 'iterations'?)\n"
    )


def test_an_unknown_field_of_a_problem_kind_is_matched_against_that_kinds_options(
    state, api_server, capsys
):
    spec = tiny_spec()
    spec["problem"]["wo"] = spec["problem"].pop("w0")  # the toy problem's w0
    path = _write(state / "job.json", spec)
    _, _, err = _run(capsys, "submit", path)
    assert err.startswith(f"bilevel: error: {path}: problem.wo: Extra inputs are not permitted")
    assert err.endswith(" (did you mean 'w0'?)\n")


def test_a_study_member_field_typo_is_matched_in_the_base_job_spec(state, api_server, capsys):
    base = tiny_spec()
    base["diagnostics"]["evrey"] = base["diagnostics"].pop("every")
    path = _write(state / "s.json", {"name": "s", "base": base, "grid": {"seed": [0, 1]}})
    _, _, err = _run(capsys, "study", "submit", path)
    assert err == (
        f"bilevel: error: {path}: base.diagnostics.evrey: Extra inputs are not permitted "
        "(did you mean 'every'?)\n"
    )


def test_a_misspelt_method_key_is_named_with_the_key_it_should_be(state, api_server, capsys):
    spec = tiny_spec()
    spec["hypergradient"]["methd"] = spec["hypergradient"].pop("method")
    path = _write(state / "job.json", spec)
    _, _, err = _run(capsys, "submit", path)
    assert err == (
        f"bilevel: error: {path}: hypergradient.method: Unable to extract tag using discriminator "
        "'method' (the file has 'methd': did you mean 'method'?)\n"
    )


def test_an_unknown_kind_gets_the_nearest_registered_kind(state, api_server, capsys):
    spec = tiny_spec()
    spec["problem"]["kind"] = "toyy"
    path = _write(state / "job.json", spec)
    code, _, err = _run(capsys, "submit", path)
    assert code == 2
    assert err.startswith(f"bilevel: error: {path}: problem.kind: ")
    assert err.endswith(" (did you mean 'toy'?)\n")
    assert len(err.splitlines()) == 1


def test_a_study_file_passed_to_submit_points_to_study_submit(state, capsys):
    path = _write(state / "s.json", {"name": "s", "base": tiny_spec(), "grid": {"seed": [0]}})
    code, out, err = _run(capsys, "submit", path)
    assert (code, out) == (2, "")
    assert err == (
        f"bilevel: error: {path} is a study (it has base and grid): submit it with "
        f"`bilevel study submit {path}`\n"
    )


def test_a_job_spec_passed_to_study_submit_points_to_submit(state, capsys):
    path = _write(state / "job.json", tiny_spec())
    code, _, err = _run(capsys, "study", "submit", path)
    assert code == 2
    assert err == (
        f"bilevel: error: {path} is a job spec, not a study (no base and grid): submit it "
        f"with `bilevel submit {path}`\n"
    )


def _fail(sessions, job_id, error):
    from jobs.status import JobStatus
    from jobs.store import repo

    with sessions.begin() as s:
        claim = repo.claim_job(s, job_id, "test-worker", 60)
        assert repo.finish_job(s, claim, JobStatus.FAILED, error=error)


def test_study_status_says_why_members_did_not_succeed(state, api_server, capsys):
    path = _write(state / "s.json", {"name": "sweep", "base": tiny_spec(iterations=4),
                                     "grid": {"seed": [0, 1]}})  # fmt: skip
    sid = _run(capsys, "study", "submit", path)[1].strip()
    _, out, _ = _run(capsys, "study", "status", sid, "--json")
    members = json.loads(out)["members"]
    error = {"type": "NonFiniteLoss", "detail": "outer loss is nan", "iteration": 3}
    _fail(api_server.sessions, uuid.UUID(members[0]["job_id"]), error)
    _run(capsys, "cancel", members[1]["job_id"])
    code, out, _ = _run(capsys, "study", "status", sid)
    assert code == 0
    lines = out.splitlines()
    assert lines[-3:] == [
        "2 member(s) did not succeed:",
        f'  {members[0]["name"]} {{"seed": 0}}: NonFiniteLoss: outer loss is nan',
        f'  {members[1]["name"]} {{"seed": 1}}: cancelled',
    ]


def test_jobs_list_has_a_header_and_filters_by_status_and_study(state, api_server, capsys):
    job = _run(capsys, "submit", _write(state / "job.json", tiny_spec()))[1].strip()
    cancelled = _run(capsys, "submit", _write(state / "job.json", tiny_spec()))[1].strip()
    _run(capsys, "cancel", cancelled)
    path = _write(state / "s.json", {"name": "sweep", "base": tiny_spec(),
                                     "grid": {"seed": [0, 1]}})  # fmt: skip
    sid = _run(capsys, "study", "submit", path)[1].strip()

    code, out, _ = _run(capsys, "jobs", "list")
    lines = out.splitlines()
    assert code == 0
    assert lines[0].split() == ["id", "status", "progress", "final", "loss", "created", "name"]
    assert len(lines) == 1 + 4
    assert lines[0].index("status") == lines[1].index(lines[1].split()[1])  # aligned columns
    _, out, _ = _run(capsys, "jobs", "list", "--status", "cancelled")
    assert [line.split()[0] for line in out.splitlines()[1:]] == [cancelled]
    _, out, _ = _run(capsys, "jobs", "list", "--study", sid)
    rows = [line.split() for line in out.splitlines()[1:]]
    assert len(rows) == 2 and job not in [r[0] for r in rows]
    assert all(r[1] == "queued" and r[2] == "0/20" for r in rows)


@pytest.mark.parametrize(
    "argv, header",
    [
        (["study", "list"], "id\tstatus\tended\tname"),
        (["webhooks", "list"], "id\turl\tcreated\tdescription"),
        (["datasets", "list"], "id"),
        (["jobs", "list"], "id"),
    ],
)
def test_every_list_starts_with_a_header_even_when_empty(argv, header, state, api_server, capsys):
    code, out, _ = _run(capsys, *argv)
    assert code == 0
    assert out.splitlines()[0].startswith(header)


def test_webhooks_create_takes_the_hook_url_as_its_argument_beside_the_service_url(
    state, api_server, capsys
):
    hook = "https://127.0.0.1:9/bilevel"  # an address: nothing to resolve in a test
    api_server.settings["webhook_allow"] = ["127.0.0.0/8"]
    code, out, err = _run(capsys, "webhooks", "create", hook, "--description", "ci")
    assert code == 0, err
    hook_id = out.splitlines()[0]
    _, out, _ = _run(capsys, "webhooks", "list")
    assert out.splitlines()[1].split("\t")[:2] == [hook_id, hook]


def test_result_of_a_job_not_yet_succeeded_is_one_line_and_exit_2(state, api_server, capsys):
    job = _run(capsys, "submit", _write(state / "job.json", tiny_spec()))[1].strip()
    code, _, err = _run(capsys, "result", job)
    assert (code, err) == (2, f"bilevel: error: HTTP 409: job {job} is queued, not succeeded\n")
    code, _, err = _run(capsys, "hparams", job, "-o", str(state / "h.npz"))
    assert (code, err) == (2, f"bilevel: error: HTTP 409: job {job} is queued: no hparams yet\n")
    assert not (state / "h.npz").exists()


class _ClosedPipe:
    """A stdout whose reader has gone (``| head`` after its lines)."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_closed_pipe_ends_the_command_quietly_with_sigpipes_code(
    state, api_server, capsys, monkeypatch
):
    job = _run(capsys, "submit", _write(state / "job.json", tiny_spec()))[1].strip()
    monkeypatch.setattr("sys.stdout", _ClosedPipe())
    from cli.main import main

    code = main(["status", job, "--key", "blv_x_y", "--url", "http://x"])
    monkeypatch.undo()
    assert code == 141
    assert capsys.readouterr().err == ""
