"""Every problem kind a spec may name: the built-in ones and those of installed plugins.

The plugins (:mod:`jobs.plugins`) are discovered once, when this module is first imported,
from the installed packages' ``bilevel.problems`` entry points: what is installed does not
change while a process runs. :data:`ProblemSpec` is then the discriminated union of every
kind's options, so a plugin kind's options are validated (and documented in the OpenAPI
schema) exactly like a built-in kind's, and an unknown kind is rejected listing the known.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import Field

from jobs.plugins import PluginKind, PluginMissing, ProblemOptions, discover
from jobs.problem_specs import BUILTIN_PROBLEMS, BuiltinProblemSpec, SpecModel

__all__ = ["PLUGINS", "PROBLEMS", "ProblemSpec", "check_installed", "source_of"]

#: kind -> the plugin that adds it, for the plugins installed in this process
PLUGINS: dict[str, PluginKind] = discover(BUILTIN_PROBLEMS)

#: ``problem.kind`` -> its options model: the built-in kinds, then the plugins'
PROBLEMS: dict[str, type[SpecModel]] = {
    **BUILTIN_PROBLEMS,
    **{kind: plugin.options for kind, plugin in PLUGINS.items()},
}

if TYPE_CHECKING:
    # what type checkers see: a plugin kind's options are some ProblemOptions subclass
    ProblemSpec = Annotated[BuiltinProblemSpec | ProblemOptions, Field(discriminator="kind")]
else:
    ProblemSpec = Annotated[Union[tuple(PROBLEMS.values())], Field(discriminator="kind")]  # noqa: UP007


def source_of(kind: str) -> dict[str, str] | None:
    """The plugin package and version ``kind`` comes from; ``None`` for a built-in kind."""
    plugin = PLUGINS.get(kind)
    return plugin.source() if plugin is not None else None


def check_installed(spec: Mapping[str, Any], plugin: Mapping[str, Any] | None) -> None:
    """Raise when a job's kind came from a plugin that this process does not have.

    Args:
        spec: the job's stored spec.
        plugin: the job's recorded plugin (``{"package", "version"}``), ``None`` if built in.

    Raises:
        PluginMissing: naming the package and the version the job was submitted with.
    """
    problem = spec.get("problem")
    kind = problem.get("kind") if isinstance(problem, Mapping) else None
    if plugin is not None and isinstance(kind, str) and kind not in PROBLEMS:
        raise PluginMissing(kind, str(plugin.get("package")), str(plugin.get("version")))
