"""Every problem kind a spec may name: the built-in ones and those of installed plugins.

The plugins (:mod:`jobs.plugins`) are discovered once, when this module is first imported,
from the installed packages' ``bilevel.problems`` entry points: what is installed does not
change while a process runs. :data:`ProblemSpec` is the discriminated union of every kind's
options, so a plugin kind's options are validated (and documented in the OpenAPI schema)
exactly like a built-in kind's, and an unknown kind is rejected listing the known. Adding a
built-in kind is one module in this folder and one line in :data:`BUILTIN`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import Field

from jobs.kinds.base import PluginError, ProblemKind, SpecModel
from jobs.kinds.counterexample import COUNTEREXAMPLE
from jobs.kinds.feature_regularization import FEATURE_REGULARIZATION
from jobs.kinds.hypercleaning import HYPERCLEANING
from jobs.kinds.mlp import MLP
from jobs.kinds.one_shot import ONE_SHOT
from jobs.kinds.quadratic import QUADRATIC
from jobs.kinds.task_interaction import TASK_INTERACTION
from jobs.kinds.toy import TOY, TOY_BIASED
from jobs.plugins import PluginKind, PluginMissing, ProblemOptions, discover

if TYPE_CHECKING:
    from jobs.kinds.counterexample import CounterexampleSpec
    from jobs.kinds.feature_regularization import FeatureRegularizationSpec
    from jobs.kinds.hypercleaning import HypercleaningSpec
    from jobs.kinds.mlp import MLPSpec
    from jobs.kinds.one_shot import OneShotSpec
    from jobs.kinds.quadratic import QuadraticSpec
    from jobs.kinds.task_interaction import TaskInteractionSpec
    from jobs.kinds.toy import ToyBiasedSpec, ToySpec

__all__ = [
    "BUILTIN",
    "KINDS",
    "PLUGINS",
    "PROBLEMS",
    "REFUSED",
    "ProblemSpec",
    "check_installed",
    "kind_of",
    "load_plugin_factories",
    "source_of",
]

log = logging.getLogger(__name__)

#: the built-in kinds, by ``problem.kind``; the keys match ``core.problems`` (a test checks)
BUILTIN: dict[str, ProblemKind] = {
    k.name: k
    for k in (
        TOY,
        TOY_BIASED,
        COUNTEREXAMPLE,
        QUADRATIC,
        HYPERCLEANING,
        FEATURE_REGULARIZATION,
        MLP,
        TASK_INTERACTION,
        ONE_SHOT,
    )
}

#: kind -> the plugin that adds it, for the plugins installed in this process
PLUGINS: dict[str, PluginKind] = discover(BUILTIN)

#: every kind: the built-in ones, then the plugins'
KINDS: dict[str, ProblemKind] = {**BUILTIN, **PLUGINS}

#: ``problem.kind`` -> its options model
PROBLEMS: dict[str, type[SpecModel]] = {name: kind.options for name, kind in KINDS.items()}

#: plugin kinds whose factory this worker refused at load, and why
REFUSED: dict[str, str] = {}

if TYPE_CHECKING:
    # what type checkers see: a plugin kind's options are some ProblemOptions subclass
    ProblemSpec = Annotated[
        ToySpec
        | ToyBiasedSpec
        | CounterexampleSpec
        | QuadraticSpec
        | HypercleaningSpec
        | FeatureRegularizationSpec
        | MLPSpec
        | TaskInteractionSpec
        | OneShotSpec
        | ProblemOptions,
        Field(discriminator="kind"),
    ]
else:
    ProblemSpec = Annotated[Union[tuple(PROBLEMS.values())], Field(discriminator="kind")]  # noqa: UP007


def kind_of(options: Any) -> ProblemKind:
    """The kind of a validated ``problem`` (its options model)."""
    return KINDS[options.kind]


def source_of(kind: str) -> dict[str, str] | None:
    """The plugin package and version ``kind`` comes from; ``None`` for a built-in kind."""
    plugin = PLUGINS.get(kind)
    return plugin.source() if plugin is not None else None


def check_installed(spec: Mapping[str, Any], plugin: Mapping[str, Any] | None) -> None:
    """Raise when a job's kind came from a plugin that this process does not have or refused.

    Args:
        spec: the job's stored spec.
        plugin: the job's recorded plugin (``{"package", "version"}``), ``None`` if built in.

    Raises:
        PluginMissing: naming the package and the version the job was submitted with.
        PluginError: the plugin is installed but its factory was refused at load (why).
    """
    problem = spec.get("problem")
    kind = problem.get("kind") if isinstance(problem, Mapping) else None
    if not isinstance(kind, str):
        return
    if plugin is not None and kind not in KINDS:
        raise PluginMissing(kind, str(plugin.get("package")), str(plugin.get("version")))
    if kind in REFUSED:
        raise PluginError(REFUSED[kind])


def load_plugin_factories() -> dict[str, str]:
    """Import every plugin's factory and check its contract (a worker, at its start).

    A plugin that breaks it is refused with a logged error naming its package; its jobs then
    fail once with that reason (:func:`check_installed`) and the worker keeps serving.

    Returns:
        kind -> why it was refused (:data:`REFUSED`).
    """
    for name, kind in PLUGINS.items():
        try:
            kind.load_factory()
        except PluginError as exc:
            REFUSED[name] = str(exc)
            log.error("problem plugin %r refused: %s", name, exc)
    return dict(REFUSED)
