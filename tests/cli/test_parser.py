"""The parser: a group's options go before or after its action; the modules form no cycle."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import pytest

from cli.main import build_parser, main

CLI = Path(__file__).parents[2] / "cli"


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings if s not in ("-h", "--help")}


def test_every_groups_options_are_accepted_after_each_action():
    groups = {
        name: sub for name, sub in _subparsers(build_parser(False)).items() if _subparsers(sub)
    }
    assert "keys" in groups
    for name, group in groups.items():
        for action, sub in _subparsers(group).items():
            missing = _options(group) - _options(sub)
            assert not missing, f"{name} {action} lacks {sorted(missing)}"


@pytest.mark.parametrize(
    "argv",
    [
        ["keys", "--state-dir", "DIR", "create", "--team", "alpha"],
        ["keys", "create", "--team", "alpha", "--state-dir", "DIR"],
        ["keys", "create", "--state-dir", "DIR", "--team", "alpha"],
        ["keys", "--state-dir", "elsewhere", "create", "--team", "alpha", "--state-dir", "DIR"],
    ],
)
def test_keys_state_dir_goes_before_or_after_the_action(argv):
    args = build_parser(False).parse_args(argv)
    assert args.state_dir == "DIR"
    assert args.action == "create"


def test_keys_create_with_state_dir_after_the_action_uses_that_store(tmp_path, capsys, monkeypatch):
    for name in ("DATABASE_URL", "BROKER_URL", "CELERY_BROKER_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BILEVEL_STATE_DIR", str(tmp_path / "default"))
    store = tmp_path / "store"
    assert main(["keys", "create", "--team", "alpha", "--state-dir", str(store)]) == 0
    key = capsys.readouterr().out.strip()
    assert main(["keys", "--state-dir", str(store), "list"]) == 0
    listed = capsys.readouterr().out
    assert listed.splitlines()[1].split("\t")[:2] == [key.split("_")[1], "alpha"]
    assert not (tmp_path / "default").exists()


def test_no_cli_module_imports_the_dispatch_module():
    importers = []
    for path in CLI.glob("*.py"):
        if path.name == "main.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
                names += [f"{node.module}.{a.name}" for a in node.names]
            if "cli.main" in names:
                importers.append(path.name)
    assert importers == []
