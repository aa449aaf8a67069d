"""docker-compose.yml and the Dockerfile: validated without a Docker engine."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import CI
from tests.e2e.workers import ROOT

SERVICES = {"postgres", "redis", "migrate", "api", "worker-cpu", "worker-gpu"}


def _compose_config() -> dict:
    binary = shutil.which("docker-compose")
    if binary is None:
        message = "docker-compose not installed (apt-get install docker-compose)"
        if CI:
            pytest.fail(message + " (CI=true)", pytrace=False)
        pytest.skip(message)
    out = subprocess.run(
        [binary, "-f", str(ROOT / "docker-compose.yml"), "--profile", "gpu", "config"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)


def test_compose_file_is_valid_and_has_every_service():
    config = _compose_config()
    services = config["services"]
    assert set(services) == SERVICES
    gpu = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"] and gpu["count"] == 1
    for name in ("api", "worker-cpu", "worker-gpu"):
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgresql://") and env["BROKER_URL"]
        # the API hashes keys with it; the workers open the webhooks' sealed secrets with it
        assert "BILEVEL_KEY_SECRET" in env and "BILEVEL_KEY_SECRET_PREVIOUS" in env
    # workers yield the CPUs to the API (cgroup weight; the API keeps the default 1024)
    assert "cpu_shares" not in services["api"]
    assert all(services[w]["cpu_shares"] < 1024 for w in ("worker-cpu", "worker-gpu"))


def test_compose_and_dockerfile_run_real_cli_commands():
    from cli.main import _Parser, add_commands

    parser = _Parser(prog="bilevel")
    add_commands(parser.add_subparsers(dest="command", required=True, parser_class=_Parser))
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    commands = [s["command"] for s in compose["services"].values() if "command" in s]
    dockerfile = (ROOT / "Dockerfile").read_text()
    cmd = re.search(r"^CMD (\[.*\])$", dockerfile, re.M).group(1)
    commands.append(yaml.safe_load(cmd))
    bilevel = [c for c in commands if c[0] == "bilevel"]
    assert len(bilevel) == 5
    for c in bilevel:
        args = parser.parse_args(c[1:])
        assert isinstance(args, argparse.Namespace) and callable(args.func)


def test_dockerfile_is_multi_stage_and_runs_unprivileged():
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM \S+ AS ([\w-]+)$", text, re.M)
    # issue 12: an `api` image without torch, a `worker` image with it, `runtime` all-in-one
    assert stages == [
        "venv", "build-api", "build-worker", "build-all", "base", "worker", "api", "runtime"
    ]  # fmt: skip
    for stage, build in (
        ("api", "build-api"),
        ("worker", "build-worker"),
        ("runtime", "build-all"),
    ):
        body = text.split(f" AS {stage}\n", 1)[1].split("\nFROM ", 1)[0]
        assert f"COPY --from={build} /opt/venv /opt/venv" in body
    assert re.search(r"^USER bilevel$", text, re.M)
