"""Problem plugins: discovery refuses malformed and clashing plugins by name, and a plugin
kind's options are validated like a built-in kind's (the example plugin is installed)."""

from __future__ import annotations

import logging
import types
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import ConfigDict, ValidationError

from jobs.plugins import (
    PluginError,
    PluginKind,
    PluginMissing,
    ProblemOptions,
    ProblemPlugin,
    discover,
)
from jobs.problem_kinds import PLUGINS, PROBLEMS, check_installed, source_of
from jobs.problem_specs import BUILTIN_PROBLEMS
from jobs.spec import field_errors, parse_spec
from tests.factories import EXAMPLES, tiny_spec


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
    return discover(BUILTIN_PROBLEMS, entry_points=eps)  # type: ignore[arg-type]


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
    assert set(PROBLEMS) == set(BUILTIN_PROBLEMS) | set(PLUGINS)


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
