"""What every problem kind is, built in or added by a plugin: one object, the same parts.

A :class:`ProblemKind` holds the kind's options model (validated by the API without torch),
the dotted path of its factory (imported by the workers only) and four optional hooks that
the one admission function (:func:`jobs.specs.admission.admit`) calls for every entry (the job
and study routes, ``bilevel run``, the worker's re-check):

- :meth:`~ProblemKind.dataset`: the data set the options read, if any (checked to exist);
- :meth:`~ProblemKind.checks`: rules that span the options and the inner optimizer;
- :meth:`~ProblemKind.fit`: whether a data set has what the kind needs (arrays, targets,
  groups, a task column), from what the store knows of it (:class:`DatasetInfo`);
- :meth:`~ProblemKind.sizes`: floats of state, of one inner step's graph and of
  hyperparameters, for the compute budget (:mod:`jobs.specs.budget`); ``None`` cannot be sized;
- :meth:`~ProblemKind.rows`: the training and validation rows, which bound
  ``inner.batch_size`` and ``outer.batch_size`` and count SABA's memory slots.

Each hook reports problems as pydantic error details (:func:`field_error`) located at the
field to change, from the spec's root: ``("problem", "dataset")``.
"""

from __future__ import annotations

import importlib
import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

if TYPE_CHECKING:
    from jobs.specs.job import InnerSpec

__all__ = [
    "CONTRACT",
    "DatasetInfo",
    "ErrorType",
    "PluginError",
    "ProblemKind",
    "Sizes",
    "SpecModel",
    "field_error",
    "raise_errors",
]

#: the kinds of a located spec problem: within the spec, against a data set, over the budget
ErrorType = Literal["cross_field", "dataset", "budget"]


#: what a factory's problem must define: a spec cannot pass hyperparameters, so the problem
#: says where the outer loop starts (``initial_hparams``)
CONTRACT = ("init", "inner_loss", "outer_loss", "initial_hparams")


class PluginError(Exception):
    """A plugin that cannot be used: malformed, clashing, or its factory fails to import."""


class SpecModel(BaseModel):
    """A part of the job spec: strict types, no unknown fields, immutable."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


def field_error(
    loc: tuple[str, ...], value: Any, message: str, kind: ErrorType = "cross_field"
) -> InitErrorDetails:
    """One located problem with a spec, as pydantic reports its own (``loc``, ``input``)."""
    return {"type": PydanticCustomError(kind, message), "loc": loc, "input": value}


def raise_errors(errors: list[InitErrorDetails]) -> None:
    """Raise them together as one ``ValidationError`` (the API's 422), if there are any."""
    if errors:
        raise ValidationError.from_exception_data("JobSpec", errors)


@dataclass(frozen=True)
class Sizes:
    """Floats a problem keeps: its inner state, one inner step's graph, its hyperparameters.

    Rough upper estimates of what ``core`` holds: they catch a spec that is orders of
    magnitude too big for a worker, not a job's memory to the byte.
    """

    state: int
    step: int
    hparams: int


@dataclass(frozen=True)
class DatasetInfo:
    """What the store knows of a data set without reading it (``jobs.datasets.checks``).

    Attributes:
        ref: the spec's reference: an uploaded data set's id, or a built-in table's name.
        name: its name, for messages.
        task: ``"classification"`` or ``"regression"``.
        n_classes: ``C`` for classification, else 0.
        n_features: ``d``.
        rows: split -> examples (``train`` and ``val`` at least).
        n_tasks: tasks of its task column (``task_<split>``), 0 without one.
        arrays: the names of its arrays.
    """

    ref: str
    name: str
    task: str
    n_classes: int
    n_features: int
    rows: Mapping[str, int]
    n_tasks: int = 0
    arrays: frozenset[str] = field(default_factory=frozenset)

    @property
    def outputs(self) -> int:
        """Outputs of a model over it: one for regression or two classes, else ``C``."""
        return 1 if self.task == "regression" or self.n_classes == 2 else self.n_classes

    def missing_task_columns(self) -> list[str]:
        """The ``task_<split>`` arrays its splits lack (a multi-task problem needs them)."""
        return sorted({f"task_{s}" for s in self.rows} - self.arrays)


class ProblemKind:
    """A problem kind: options, factory and the admission hooks (see the module docstring).

    Attributes:
        name: the spec's ``problem.kind``.
        options: the options model; its ``kind`` field is ``Literal[name]``.
        factory: ``"module:attribute"`` of the callable that builds the problem on a worker,
            ``factory(options, *, seed, device, datasets, **context)`` returning a
            ``core.BilevelProblem`` (the contract: ``docs`` and :mod:`jobs.plugins`).
        batches: whether the kind trains on ``inner.batch_size`` rows per inner step (and
            splits its training set into batches of that size for the single-loop methods).
        outer_batches: whether its outer objective reads ``outer.batch_size`` validation
            rows per outer step (the factory takes ``val_batch_size``).
        reads_dataset: whether an option may name a team's data set or a built-in table.
        builtin: ``False`` for a plugin's kind.
    """

    name: str
    options: type[SpecModel]
    factory: str
    batches: bool = False
    outer_batches: bool = False
    reads_dataset: bool = False
    builtin: bool = True

    @property
    def description(self) -> str:
        """One paragraph for ``GET /v1/problems``: the options' docstring."""
        return inspect.cleandoc(self.options.__doc__ or "")

    def source(self) -> dict[str, str] | None:
        """The plugin package and version the kind comes from; ``None`` when built in."""
        return None

    def dataset(self, options: Any) -> tuple[str, str] | None:
        """``(option name, reference)`` of the data set ``options`` read, or ``None``.

        A reference is an uploaded data set's id or a built-in table's name; admission looks
        it up and calls :meth:`fit` with what it finds.
        """
        return None

    def checks(self, options: Any, inner: InnerSpec) -> list[InitErrorDetails]:
        """Rules that span the options and the inner optimizer (``mu <= L``, ...)."""
        return []

    def fit(self, options: Any, data: DatasetInfo) -> list[InitErrorDetails]:
        """What ``data`` lacks for these options (a task column, class labels, groups)."""
        return []

    def sizes(self, options: Any, inner: InnerSpec, data: DatasetInfo | None) -> Sizes | None:
        """The floats the problem keeps (:class:`Sizes`); ``None`` when it cannot say."""
        return None

    def rows(self, options: Any, data: DatasetInfo | None) -> Mapping[str, int] | None:
        """Rows per split (``train``, ``val``) the problem reads; ``None`` when unknown.

        By default the data set's, when the options name one (what the store knows of it).
        """
        return data.rows if data is not None else None

    def size_field(self, options: Any) -> tuple[tuple[str, ...], Any] | None:
        """The option that sets one inner step's size, named when a one-step graph is too big."""
        return None

    def owner(self) -> str:
        """Who provides the kind, for messages."""
        return f"built-in kind {self.name!r}"

    def load_factory(self) -> Callable[..., Any]:
        """Import the factory (on a worker: it may import torch) and check its contract.

        The factory of a plugin must be a ``core.BilevelProblem`` subclass, or annotate
        the subclass it returns, and that class must define :data:`CONTRACT`.

        Raises:
            PluginError: the module or attribute cannot be imported, is not callable, or
                breaks the contract; the message names the package.
        """
        module_name, _, attr = self.factory.partition(":")
        try:
            # the one dynamic import of the service: a factory path an operator installed
            # (a kind's, never a spec's)
            found: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                found = getattr(found, part)
        except Exception as exc:
            raise PluginError(
                f"{self.owner()}: cannot import its factory {self.factory!r} for kind "
                f"{self.name!r}: {type(exc).__name__}: {exc}"
            ) from exc
        if not callable(found):
            raise PluginError(f"{self.owner()}: factory {self.factory!r} is not callable")
        if not self.builtin:
            _check_contract(found, f"{self.owner()}: factory {self.factory!r}")
        return found  # type: ignore[no-any-return]


def _check_contract(factory: Any, who: str) -> None:
    cls = factory if isinstance(factory, type) else _return_class(factory)
    if cls is None or _base_problem(cls) is None:
        raise PluginError(
            f"{who} must be a core.BilevelProblem subclass or annotate the subclass it returns"
        )
    base = _base_problem(cls)
    missing = [m for m in CONTRACT if _defined_in(cls, m) in (None, base)]
    if missing:
        raise PluginError(
            f"{who}: its problem {cls.__name__} does not define {', '.join(missing)} "
            f"(a problem defines {', '.join(CONTRACT)})"
        )


def _return_class(factory: Any) -> type | None:
    try:
        ret = typing.get_type_hints(factory).get("return")
    except Exception:  # an annotation that does not resolve says nothing
        return None
    return ret if isinstance(ret, type) else None


def _base_problem(cls: type) -> type | None:
    """``core.BilevelProblem`` among ``cls``'s bases, found by name: jobs imports no core."""
    for c in cls.__mro__:
        if c.__name__ == "BilevelProblem" and c.__module__ == "core.problem":
            return c
    return None


def _defined_in(cls: type, name: str) -> type | None:
    return next((c for c in cls.__mro__ if name in vars(c)), None)
