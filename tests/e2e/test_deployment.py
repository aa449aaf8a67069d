"""docker-compose.yml and the Dockerfile: validated without a Docker engine."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import CI
from tests.e2e.workers import ROOT

SERVICES = {"postgres", "redis", "migrate", "lb", "api", "worker-cpu", "worker-gpu"}


def _compose_config(**env: str) -> dict:
    binary = shutil.which("docker-compose")
    if binary is None:
        message = "docker-compose not installed (apt-get install docker-compose)"
        if CI:
            pytest.fail(message + " (CI=true)", pytrace=False)
        pytest.skip(message)
    out = subprocess.run(
        [binary, "-f", str(ROOT / "docker-compose.yml"), "--profile", "gpu", "config"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, **env},
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


def test_compose_runs_replicas_behind_one_address():
    # defaults: two API replicas, one CPU worker; the environment sets both
    services = _compose_config()["services"]
    assert services["api"]["deploy"]["replicas"] == 2
    assert services["worker-cpu"]["deploy"]["replicas"] == 1
    scaled = _compose_config(BILEVEL_API_REPLICAS="3", BILEVEL_CPU_WORKERS="5")["services"]
    assert scaled["api"]["deploy"]["replicas"] == 3
    assert scaled["worker-cpu"]["deploy"]["replicas"] == 5
    # one address: only the balancer publishes a port, and it is the API's documented one
    published = {name: s["ports"] for name, s in services.items() if s.get("ports")}
    assert list(published) == ["lb"]
    (port,) = published["lb"]
    host_port = port["published"] if isinstance(port, dict) else port.split(":")[0]
    assert str(host_port) == "8000"
    api_port = services["api"]["command"][services["api"]["command"].index("--port") + 1]
    # the balancer's configuration is the mounted file, and it forwards to the service name
    # `api` (every replica) on the port the API listens on
    (volume,) = services["lb"]["volumes"]
    source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    assert source.endswith("deploy/nginx.conf")
    assert re.search(r"listen\s+8000;", conf)
    assert f"http://api:{api_port}" in conf
    # looked up through Docker's DNS at request time: replicas added later are used
    assert re.search(r"resolver\s+127\.0\.0\.11", conf) and "proxy_pass $api;" in conf
    # the replicas trust the balancer's X-Forwarded-For and are reachable only through it
    assert services["api"]["environment"]["FORWARDED_ALLOW_IPS"] == "*"


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
