"""Problem plugins: kinds of ``problem`` that an installed package adds (``bilevel.problems``).

A plugin is trusted code, installed by an operator into the API's and the workers' images
(like Celery tasks or Airflow providers); no spec ever carries code. A package declares one
entry point per kind, named after the kind::

    [project.entry-points."bilevel.problems"]
    digits_mlp = "bilevel_digits_mlp.spec:PLUGIN"

and the entry point resolves to a :class:`ProblemPlugin`: the options model (a
:class:`ProblemOptions`, importable without torch, so that the API validates specs of the
kind), the dotted path of the problem factory, imported on the worker only, and optional
admission hooks (the option naming a data set, checked against the team's store; fit checks;
sizes for the compute budget). A discovered plugin is a :class:`PluginKind`, a
:class:`jobs.kinds.base.ProblemKind` like every built-in kind.

The factory's contract (checked by :meth:`PluginKind.load_factory` when a worker loads it):
it is called as ``factory(options, *, seed, device, datasets)``, plus ``data_dir`` (the
worker's ``BILEVEL_DATA_DIR``) and ``batch_size`` (``inner.batch_size``) when it names them,
and returns a ``core.BilevelProblem`` of the class its return annotation names (or the
factory is that class). That class defines ``init``, ``inner_loss``, ``outer_loss`` and
``initial_hparams`` (where the outer loop starts: a spec cannot pass hyperparameters), and
may define ``metrics``, ``inner_grad``, ``before_iteration(iteration)`` (new data for each
hyper-iteration) and ``evaluate(hparams, dynamics)`` (final metrics). ``datasets(ref)``
returns the named arrays (``x_train``, ``y_train``, ``x_val``, ``y_val``, maybe ``x_test``,
``y_test``, ``task_<split>``, ``groups``) of a data set reference: an uploaded data set's id
or a built-in table (``digits``, ``diabetes``, ``breast_cancer``). The learned
hyperparameters are saved under their names in ``initial_hparams()``'s dict (``hparams``
for a single tensor) in the job's ``hparams.npz``.

:func:`discover` refuses a malformed plugin, one that reuses a built-in kind or a kind
another package added, with a logged error naming the package; the rest still load.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Literal, cast

from pydantic import create_model
from pydantic_core import InitErrorDetails

from jobs.kinds.base import (
    DatasetInfo,
    PluginError,
    ProblemKind,
    Sizes,
    SpecModel,
    field_error,
)

__all__ = [
    "GROUP",
    "PluginError",
    "PluginKind",
    "PluginMissing",
    "ProblemOptions",
    "ProblemPlugin",
    "discover",
]

log = logging.getLogger(__name__)

#: the entry-point group a package adds problem kinds through
GROUP = "bilevel.problems"
_KIND = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class PluginMissing(PluginError):
    """A job's kind comes from a plugin that is not installed where the job runs.

    Args:
        kind: the job's ``problem.kind``.
        package: the plugin package the job was submitted with.
        version: that package's version at submission.
    """

    def __init__(self, kind: str, package: str, version: str):
        super().__init__(
            f"problem kind {kind!r} comes from the plugin package {package!r} "
            f"(version {version} at submission), which is not installed on this worker"
        )
        self.kind, self.package, self.version = kind, package, version


class ProblemOptions(SpecModel):
    """The base of a plugin's options model: strict types, no unknown fields, immutable.

    Declare the options with bounds, as the built-in kinds do (:mod:`jobs.kinds`);
    ``kind`` is set by :func:`discover` to the entry point's name.
    """

    kind: str


@dataclass(frozen=True)
class ProblemPlugin:
    """What a ``bilevel.problems`` entry point resolves to.

    Attributes:
        options: the kind's options (a :class:`ProblemOptions` subclass, without ``kind``).
        factory: ``"module:attribute"`` of the callable that builds the problem; imported on
            the worker only, so the module may import torch and ``core``.
        description: one paragraph for ``GET /v1/problems``; the options' docstring if empty.
        dataset_option: the name of an option that holds a data set reference (an id or a
            built-in table): admission checks that the team has it (422 at
            ``problem.<option>``) and passes what the store knows of it to ``fit`` and
            ``sizes``.
        fit: ``fit(options, data) -> [message, ...]``: what the data set (a
            :class:`jobs.kinds.base.DatasetInfo`) lacks for these options; each message is a
            422 at ``problem.<dataset_option>``.
        sizes: ``sizes(options, inner, data) -> Sizes | None``: the floats of the inner
            state, of one inner step's graph and of the hyperparameters
            (:class:`jobs.kinds.base.Sizes`), so the compute budget can size the kind's
            graph; without it only the inner steps in all are bounded.
        batches: whether the factory takes ``batch_size`` (``inner.batch_size``).
        outer_batches: whether the factory takes ``val_batch_size`` (``outer.batch_size``).
    """

    options: type[ProblemOptions]
    factory: str
    description: str = ""
    dataset_option: str | None = None
    fit: Callable[[Any, DatasetInfo], list[str]] | None = None
    sizes: Callable[[Any, Any, DatasetInfo | None], Sizes | None] | None = None
    batches: bool = False
    outer_batches: bool = False


@dataclass(frozen=True)
class PluginKind(ProblemKind):
    """A discovered plugin kind: a :class:`~jobs.kinds.base.ProblemKind` from a package.

    Attributes:
        name: the entry point's name, the spec's ``problem.kind``.
        options: the plugin's options model with ``kind: Literal[name]`` added.
        factory: ``"module:attribute"`` of the problem factory.
        about: what the kind is.
        package: the distribution that declared the entry point.
        version: its version.
        plugin: the entry point's :class:`ProblemPlugin` (its optional hooks).
    """

    name: str
    options: type[ProblemOptions]
    factory: str
    about: str
    package: str
    version: str
    plugin: ProblemPlugin
    builtin: bool = False

    @property
    def kind(self) -> str:
        """The spec's ``problem.kind``."""
        return self.name

    @property
    def description(self) -> str:
        """One paragraph for ``GET /v1/problems``."""
        return self.about

    @property
    def batches(self) -> bool:  # type: ignore[override]
        """Whether the factory takes ``inner.batch_size``."""
        return self.plugin.batches

    @property
    def outer_batches(self) -> bool:  # type: ignore[override]
        """Whether the factory takes ``outer.batch_size`` (as ``val_batch_size``)."""
        return self.plugin.outer_batches

    @property
    def reads_dataset(self) -> bool:  # type: ignore[override]
        """Whether the plugin declares a ``dataset_option``."""
        return self.plugin.dataset_option is not None

    def source(self) -> dict[str, str]:
        """Where the kind comes from, as a job records it: ``{"package", "version"}``."""
        return {"package": self.package, "version": self.version}

    def owner(self) -> str:
        """The package and version, for messages."""
        return f"plugin package {self.package!r} {self.version}"

    def dataset(self, options: Any) -> tuple[str, str] | None:
        """The data set named by the plugin's ``dataset_option``, if it declares one."""
        name = self.plugin.dataset_option
        value = getattr(options, name, None) if name else None
        return (name, value) if name and isinstance(value, str) else None

    def fit(self, options: Any, data: DatasetInfo) -> list[InitErrorDetails]:
        """The plugin's ``fit`` messages, each a 422 at ``problem.<dataset_option>``."""
        found = self.dataset(options)
        if self.plugin.fit is None or found is None:
            return []
        return [
            field_error(("problem", found[0]), found[1], str(message), "dataset")
            for message in self.plugin.fit(options, data)
        ]

    def sizes(self, options: Any, inner: Any, data: DatasetInfo | None) -> Sizes | None:
        """The plugin's ``sizes``; ``None`` (not sized) without one."""
        return self.plugin.sizes(options, inner, data) if self.plugin.sizes else None


def _package(ep: metadata.EntryPoint) -> tuple[str, str]:
    try:
        dist = ep.dist
        if dist is not None:
            return dist.name, dist.version
    except Exception:  # broken metadata: the entry point's module still names the package
        pass
    return ep.value.split(":")[0].split(".")[0], "unknown"


def _load(ep: metadata.EntryPoint, package: str, version: str) -> PluginKind:
    """The plugin behind ``ep``, checked; :class:`PluginError` says what is wrong."""
    kind = ep.name
    if not _KIND.match(kind):
        raise PluginError(f"kind {kind!r} must match {_KIND.pattern}")
    try:
        plugin = ep.load()
    except Exception as exc:
        raise PluginError(f"cannot import {ep.value!r}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(plugin, ProblemPlugin):
        raise PluginError(
            f"{ep.value!r} must be a jobs.plugins.ProblemPlugin, got {type(plugin).__name__}"
        )
    options = plugin.options
    if not (isinstance(options, type) and issubclass(options, ProblemOptions)):
        raise PluginError(f"options must subclass jobs.plugins.ProblemOptions, got {options!r}")
    if not isinstance(plugin.factory, str) or not _FACTORY.match(plugin.factory):
        raise PluginError(f"factory must be 'module:attribute', got {plugin.factory!r}")
    # the kind is the entry point's name: the model cannot disagree with it
    tag: Any = Literal[kind]
    model = cast(
        type[ProblemOptions],
        create_model(
            options.__name__,
            __base__=options,
            __module__=options.__module__,
            __doc__=options.__doc__,
            kind=(tag, ...),
        ),
    )
    # the kind joins JobSpec's union and the OpenAPI document: a model without a JSON
    # Schema would break both, so it is refused here rather than there
    try:
        model.model_json_schema()
    except Exception as exc:
        raise PluginError(f"options have no JSON Schema: {type(exc).__name__}: {exc}") from exc
    if plugin.dataset_option is not None and plugin.dataset_option not in options.model_fields:
        raise PluginError(f"dataset_option {plugin.dataset_option!r} is not one of the options")
    for hook in ("fit", "sizes"):
        if getattr(plugin, hook) is not None and not callable(getattr(plugin, hook)):
            raise PluginError(f"{hook} must be callable, got {getattr(plugin, hook)!r}")
    description = plugin.description or inspect.cleandoc(options.__doc__ or "")
    return PluginKind(kind, model, plugin.factory, description, package, version, plugin)


def discover(
    builtin: Collection[str], entry_points: Iterable[metadata.EntryPoint] | None = None
) -> dict[str, PluginKind]:
    """The plugin kinds installed, each checked; the refused ones logged as errors.

    Args:
        builtin: the built-in kinds; a plugin may not replace one.
        entry_points: the entry points to read (default: the ``bilevel.problems`` group of
            the installed packages).

    Returns:
        kind -> :class:`PluginKind`, in the order the entry points come. Of two packages
        adding one kind, the first keeps it and the second is refused.
    """
    eps = metadata.entry_points(group=GROUP) if entry_points is None else entry_points
    found: dict[str, PluginKind] = {}
    for ep in eps:
        package, version = _package(ep)
        try:
            if ep.name in builtin:
                raise PluginError(f"kind {ep.name!r} clashes with the built-in kind")
            if ep.name in found:
                raise PluginError(
                    f"kind {ep.name!r} is already added by package {found[ep.name].package!r}"
                )
            found[ep.name] = _load(ep, package, version)
        except Exception as exc:  # a broken plugin must not take the API or a worker down
            log.error("problem plugin %r of package %s %s refused: %s",
                      ep.name, package, version, exc)  # fmt: skip
    return found
