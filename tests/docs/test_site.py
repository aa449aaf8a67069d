"""The documentation site builds with ``mkdocs build --strict``, and its generated pages
cover every route and every command; the webhook guide's signature check works."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "docs"))
import hooks  # noqa: E402  (docs/hooks.py: the generators the site's build runs)


def test_the_site_builds_strictly(tmp_path):
    """A broken link, a missing anchor or a stale reference fails the build (mkdocs.yml)."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    for page in ("reference/rest", "reference/cli", "reference/client", "guides/plugins"):
        assert (tmp_path / page / "index.html").exists()


def test_the_rest_reference_has_every_operation_and_schema():
    doc = hooks.openapi()
    page = hooks.rest_markdown(doc)
    for path, item in doc["paths"].items():
        for method in hooks._METHODS:
            if method in item:
                assert f"### {method.upper()} `{path}`" in page
    for name in doc["components"]["schemas"]:
        assert f"### {name} {{#schema-{name.lower()}}}" in page


def test_the_cli_reference_has_every_command_and_action():
    from cli.main import build_parser

    parser = build_parser(with_experiments=False)
    page = hooks.cli_markdown(parser)
    for name, sub in hooks._subparsers(parser).items():
        assert f"## `bilevel {name}`" in page
        for action in hooks._subparsers(sub):
            assert f"### `bilevel {name} {action}`" in page
    assert "### `bilevel jobs list`" in page and "## `bilevel hparams`" in page


def _verify_from_the_guide():
    text = (ROOT / "docs" / "guides" / "webhooks.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    scope: dict = {}
    exec(compile(code, "webhooks.md", "exec"), scope)
    return scope["verify"]


def test_the_webhook_guides_signature_check_accepts_the_servers_signature():
    from jobs.webhooks import signature_header

    verify = _verify_from_the_guide()
    body, secret, now = b'{"type": "job.succeeded"}', "whsec_test", int(time.time())
    header = signature_header(secret, now, body)
    assert verify(secret, header, body)
    assert not verify(secret, header, body + b" ")  # another body
    assert not verify("whsec_other", header, body)  # another secret
    assert not verify(secret, signature_header(secret, now - 3600, body), body)  # too old
