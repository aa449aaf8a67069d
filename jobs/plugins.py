"""Problem plugins: kinds of ``problem`` that an installed package adds (``bilevel.problems``).

A plugin is trusted code, installed by an operator into the API's and the workers' images
(like Celery tasks or Airflow providers); no spec ever carries code. A package declares one
entry point per kind, named after the kind::

    [project.entry-points."bilevel.problems"]
    digits_mlp = "bilevel_digits_mlp.spec:PLUGIN"

and the entry point resolves to a :class:`ProblemPlugin`: the options model (a
:class:`ProblemOptions`, importable without torch, so that the API validates specs of the
kind) and the dotted path of the problem factory, imported on the worker only. There it is
called as ``factory(options, seed=..., device=..., datasets=...)`` (see
:meth:`PluginKind.load_factory`) and returns a ``core.BilevelProblem``.

:func:`discover` refuses a malformed plugin, one that reuses a built-in kind or a kind
another package added, with a logged error naming the package; the rest still load.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Literal, cast

from pydantic import create_model

from jobs.problem_specs import SpecModel

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


class PluginError(Exception):
    """A plugin that cannot be used: malformed, clashing, or its factory fails to import."""


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

    Declare the options with bounds, as the built-in kinds do (:mod:`jobs.problem_specs`);
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
    """

    options: type[ProblemOptions]
    factory: str
    description: str = ""


@dataclass(frozen=True)
class PluginKind:
    """A discovered plugin kind.

    Attributes:
        kind: the entry point's name, the spec's ``problem.kind``.
        options: the plugin's options model with ``kind: Literal[kind]`` added.
        factory: ``"module:attribute"`` of the problem factory.
        description: what the kind is.
        package: the distribution that declared the entry point.
        version: its version.
    """

    kind: str
    options: type[ProblemOptions]
    factory: str
    description: str
    package: str
    version: str

    def source(self) -> dict[str, str]:
        """Where the kind comes from, as a job records it: ``{"package", "version"}``."""
        return {"package": self.package, "version": self.version}

    def load_factory(self) -> Callable[..., Any]:
        """Import the factory (on the worker: it may import torch).

        It is called as ``factory(options, *, seed, device, datasets)`` with the validated
        options model, the job's seed, the ``torch.device`` to build on and a callable that
        resolves a data set reference (``problem.dataset``-like: an id or a built-in table)
        to its named arrays; it returns a ``core.BilevelProblem``.

        Raises:
            PluginError: the module or the attribute cannot be imported, or is not callable.
        """
        module_name, _, attr = self.factory.partition(":")
        try:
            found: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                found = getattr(found, part)
        except Exception as exc:
            raise PluginError(
                f"plugin package {self.package!r} {self.version}: cannot import its factory "
                f"{self.factory!r} for kind {self.kind!r}: {type(exc).__name__}: {exc}"
            ) from exc
        if not callable(found):
            raise PluginError(
                f"plugin package {self.package!r} {self.version}: factory {self.factory!r} "
                f"is not callable"
            )
        return found  # type: ignore[no-any-return]


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
    description = plugin.description or inspect.cleandoc(options.__doc__ or "")
    return PluginKind(kind, model, plugin.factory, description, package, version)


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
