"""Problem plugins: discovery refuses malformed and clashing plugins by name, and a plugin
kind's options are validated like a built-in kind's (the example plugin is installed)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import types
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import ConfigDict, ValidationError

from jobs.kinds.registry import BUILTIN, PLUGINS, PROBLEMS, check_installed, source_of
from jobs.plugins import (
    PluginError,
    PluginKind,
    PluginMissing,
    ProblemOptions,
    ProblemPlugin,
    discover,
)
from jobs.specs.job import field_errors, parse_spec
from tests.factories import EXAMPLES, tiny_spec

ROOT = EXAMPLES.parent


class Options(ProblemOptions):
    """Fake options."""

    width: int = 3


GOOD = ProblemPlugin(options=Options, factory="fake_module:build")


class Opaque:
    """A type pydantic can hold but has no JSON Schema for."""


class NoSchema(ProblemOptions):
    """Options that cannot be documented."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    thing: Opaque | None = None


@dataclass
class FakeEntryPoint:
    """What discovery reads of an ``importlib.metadata.EntryPoint``."""

    name: str
    obj: Any
    package: str = "fake-pkg"
    version: str = "1.2.3"
    value: str = "fake_module.spec:PLUGIN"

    @property
    def dist(self) -> Any:
        return types.SimpleNamespace(name=self.package, version=self.version)

    def load(self) -> Any:
        if isinstance(self.obj, BaseException):
            raise self.obj
        return self.obj


def _discover(*eps: FakeEntryPoint) -> dict[str, PluginKind]:
    return discover(BUILTIN, entry_points=eps)  # type: ignore[arg-type]


def test_a_plugin_is_discovered_with_its_kind_pinned_to_the_entry_point_name():
    found = _discover(FakeEntryPoint("fake", GOOD))
    plugin = found["fake"]
    assert plugin.source() == {"package": "fake-pkg", "version": "1.2.3"}
    assert plugin.options(kind="fake").width == 3
    with pytest.raises(ValidationError):
        plugin.options(kind="other")


def test_a_plugin_reusing_a_built_in_kind_is_refused_naming_its_package(caplog):
    with caplog.at_level(logging.ERROR, logger="jobs.plugins"):
        found = _discover(
            FakeEntryPoint("toy", GOOD, package="evil-pkg"), FakeEntryPoint("ok", GOOD)
        )
    assert list(found) == ["ok"]
    assert "evil-pkg" in caplog.text
    assert "'toy' clashes with the built-in kind" in caplog.text


def test_a_kind_added_by_two_packages_stays_with_the_first(caplog):
    with caplog.at_level(logging.ERROR, logger="jobs.plugins"):
        found = _discover(
            FakeEntryPoint("same", GOOD, package="first-pkg"),
            FakeEntryPoint("same", GOOD, package="second-pkg"),
        )
    assert found["same"].package == "first-pkg"
    assert "problem plugin 'same' of package second-pkg 1.2.3 refused" in caplog.text
    assert "already added by package 'first-pkg'" in caplog.text


@pytest.mark.parametrize(
    ("name", "obj", "message"),
    [
        ("broken", ImportError("no module named torchvision"),
         "cannot import 'fake_module.spec:PLUGIN': ImportError: no module named torchvision"),
        ("notaplugin", Options, "must be a jobs.plugins.ProblemPlugin, got ModelMetaclass"),
        ("badoptions", ProblemPlugin(options=dict, factory="m:f"),  # type: ignore[arg-type]
         "options must subclass jobs.plugins.ProblemOptions, got <class 'dict'>"),
        ("badfactory", ProblemPlugin(options=Options, factory="m.f"),
         "factory must be 'module:attribute', got 'm.f'"),
        ("Bad-Kind", GOOD, "kind 'Bad-Kind' must match"),
        ("noschema", ProblemPlugin(options=NoSchema, factory="m:f"),
         "options have no JSON Schema: PydanticInvalidForJsonSchema"),
    ],
)  # fmt: skip
def test_a_malformed_plugin_is_refused_with_the_reason_and_the_rest_load(
    caplog, name, obj, message
):
    with caplog.at_level(logging.ERROR, logger="jobs.plugins"):
        found = _discover(FakeEntryPoint(name, obj, package="bad-pkg"), FakeEntryPoint("ok", GOOD))
    assert list(found) == ["ok"]
    assert f"problem plugin {name!r} of package bad-pkg 1.2.3 refused" in caplog.text
    assert message in caplog.text


def test_a_factory_that_cannot_be_imported_is_a_plugin_error_naming_the_package():
    plugin = _discover(FakeEntryPoint("fake", GOOD))["fake"]
    with pytest.raises(PluginError) as info:
        plugin.load_factory()
    assert str(info.value).startswith(
        "plugin package 'fake-pkg' 1.2.3: cannot import its factory 'fake_module:build' for "
        "kind 'fake': ModuleNotFoundError"
    )


def test_the_example_plugins_job_is_a_valid_spec_of_its_kind():
    spec = parse_spec((EXAMPLES / "plugins" / "bilevel_digits_mlp" / "job.json").read_text())
    assert spec.problem.kind == "digits_mlp"


def test_the_example_plugin_is_installed_with_its_package_and_version():
    from importlib.metadata import version

    assert source_of("digits_mlp") == {
        "package": "bilevel-digits-mlp",
        "version": version("bilevel-digits-mlp"),
    }
    assert source_of("toy") is None
    assert set(PROBLEMS) == set(BUILTIN) | set(PLUGINS)


def _plugin_spec(**options: Any) -> dict[str, Any]:
    return tiny_spec(problem={"kind": "digits_mlp", **options})


def test_a_plugin_kinds_options_are_validated_naming_the_field():
    spec = parse_spec(_plugin_spec(hidden=8))
    assert spec.problem.kind == "digits_mlp"
    with pytest.raises(ValidationError) as info:
        parse_spec(_plugin_spec(hidden=0, colour="red"))
    errors = {e["field"]: e["message"] for e in field_errors(info.value)}
    assert errors == {
        "problem.hidden": "Input should be greater than or equal to 1",
        "problem.colour": "Extra inputs are not permitted",
    }


def test_an_unknown_kind_is_rejected_listing_the_plugin_kinds_too():
    with pytest.raises(ValidationError) as info:
        parse_spec(tiny_spec(problem={"kind": "nope"}))
    (error,) = field_errors(info.value)
    assert error["field"] == "problem.kind"
    assert "'digits_mlp'" in error["message"]
    assert "'toy'" in error["message"]


def test_a_job_whose_plugin_is_missing_here_raises_naming_the_package():
    spec = tiny_spec(problem={"kind": "gone_kind"})
    with pytest.raises(PluginMissing) as info:
        check_installed(spec, {"package": "gone-pkg", "version": "0.3"})
    assert str(info.value) == (
        "problem kind 'gone_kind' comes from the plugin package 'gone-pkg' (version 0.3 at "
        "submission), which is not installed on this worker"
    )
    check_installed(_plugin_spec(), {"package": "bilevel-digits-mlp", "version": "0.1.0"})
    check_installed(tiny_spec(), None)


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False,
        cwd=ROOT, env={**os.environ, **env},
    )  # fmt: skip


def test_broken_installed_plugins_are_refused_by_name_and_the_api_still_starts(tmp_path):
    # a real installed distribution (a .dist-info on the path) with a clashing and a broken
    # entry point, read by importlib.metadata in a fresh interpreter that imports the API
    dist = tmp_path / "bad_plugins-9.9.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: bad-plugins\nVersion: 9.9\n")
    (dist / "entry_points.txt").write_text(
        "[bilevel.problems]\ntoy = bad_plugins.spec:PLUGIN\nbroken = bad_plugins.nowhere:PLUGIN\n"
    )
    code = (
        "import sys; from api.main import create_app; from jobs.specs.job import PROBLEMS; "
        "print(PROBLEMS['toy'].__module__ == 'jobs.kinds.toy', "
        "'digits_mlp' in PROBLEMS, 'broken' in PROBLEMS, 'torch' in sys.modules)"
    )
    proc = _python(code, PYTHONPATH=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    builtin_toy, example_plugin, broken, torch = proc.stdout.split()
    assert builtin_toy == "True"  # the clash did not replace the built-in kind
    assert example_plugin == "True"  # the good plugin still loaded
    assert broken == "False"
    assert torch == "False"
    assert "problem plugin 'toy' of package bad-plugins 9.9 refused" in proc.stderr
    assert "'toy' clashes with the built-in kind" in proc.stderr
    assert "problem plugin 'broken' of package bad-plugins 9.9 refused: cannot import" in (
        proc.stderr
    )


def test_a_plugin_module_imported_before_jobs_is_still_discovered():
    # the options module imports jobs.plugins; that must not run discovery half-way through
    proc = _python(
        "import bilevel_digits_mlp.spec; from jobs.kinds.registry import PLUGINS; "
        "print(list(PLUGINS))"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['digits_mlp']"
