"""Task interaction (Section 4.2.2): models of several tasks coupled by a learned similarity."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field
from pydantic_core import InitErrorDetails

from jobs.kinds.base import DatasetInfo, ProblemKind, Sizes, SpecModel, field_error
from jobs.kinds.tables import BUILTIN_TABLES, UUID_PATTERN

__all__ = ["PAPER_TASK_SETS", "TASK_INTERACTION", "TaskInteractionSpec"]

#: the paper's set-up: each class of one of these is a task
PAPER_TASK_SETS = ("digits", "mnist", "fashion-mnist", "omniglot")
# their classes, and raw pixels (omniglot resized to 28x28)
_CLASSES = {"digits": 10, "mnist": 10, "fashion-mnist": 10, "omniglot": 1623}
_FEATURES = {"digits": 64, "mnist": 784, "fashion-mnist": 784, "omniglot": 784}
_PAPER_ONLY = ("n_tasks", "n_train", "n_val")


class TaskInteractionSpec(SpecModel):
    """Task interaction (Section 4.2.2): V models coupled by a learned task similarity ``C``.

    Two set-ups, both learning ``C = softplus(B) + softplus(B)ᵀ`` and a ridge
    ``ρ = softplus(nu)`` (Appendix G.2; ``B`` and ``nu`` come back under those names):

    * the paper's, with no upload: ``dataset`` is one of :data:`PAPER_TASK_SETS`, each of
      its first ``n_tasks`` classes is a task (one row of a softmax regression on raw
      features), with ``n_train`` and ``n_val`` class-balanced examples and the rest as the
      test set. ``mnist`` and ``omniglot`` read the worker's ``BILEVEL_DATA_DIR``.
    * a data set with a task column (``task_<split>``): an uploaded one's id, or the
      built-in ``diabetes`` table (the patients' sex); one linear, logistic or softmax model
      per task id.
    """

    kind: Literal["task_interaction"]
    dataset: Annotated[
        str,
        Field(
            pattern=f"^({UUID_PATTERN}|{'|'.join(sorted({*BUILTIN_TABLES, *PAPER_TASK_SETS}))})$",
            description="digits, mnist, fashion-mnist or omniglot (each class a task), "
            "diabetes, or the id of a data set with a task column",
        ),
    ]
    coupling_init: Annotated[float, Field(gt=0, le=1e3)] | None = None
    rho_init: Annotated[float, Field(gt=0, le=1e3)] = 0.01
    standardize: bool = True
    # the paper's set-up only (PAPER_TASK_SETS); None there: 10 tasks of m = 50 examples
    # each for training and validation, the paper's CIFAR-10 setting
    n_tasks: Annotated[int, Field(ge=2, le=100)] | None = None
    n_train: Annotated[int, Field(ge=2, le=10_000)] | None = None
    n_val: Annotated[int, Field(ge=2, le=10_000)] | None = None

    def paper_sizes(self) -> tuple[int, int, int]:
        """``(n_tasks, n_train, n_val)`` of the paper's set-up, defaults filled in."""
        return self.n_tasks or 10, self.n_train or 50, self.n_val or 50


class _TaskInteraction(ProblemKind):
    name = "task_interaction"
    options = TaskInteractionSpec
    factory = "worker.factories:task_interaction"
    reads_dataset = True
    batches = True

    def dataset(self, options: TaskInteractionSpec) -> tuple[str, str] | None:
        # the paper's sets are loaded by the kind itself, classes as tasks
        return None if options.dataset in PAPER_TASK_SETS else ("dataset", options.dataset)

    def checks(self, options: TaskInteractionSpec, inner: Any) -> list[InitErrorDetails]:
        """The paper's set-up (classes as tasks) and a task column take different options."""
        p, ref, errors = options, options.dataset, []
        if ref not in PAPER_TASK_SETS:
            sets = ", ".join(PAPER_TASK_SETS)
            for name in _PAPER_ONLY:
                value = getattr(p, name)
                if value is not None:
                    message = f"{name} applies to the paper's ({sets}), not {ref!r}"
                    errors.append(field_error(("problem", name), value, message))
            return errors
        n_tasks, n_train, n_val = p.paper_sizes()
        classes = _CLASSES[ref]
        if n_tasks > classes:
            message = f"n_tasks must be <= {classes} (the classes of {ref}), got {n_tasks}"
            errors.append(field_error(("problem", "n_tasks"), n_tasks, message))
        for name, value in (("n_train", n_train), ("n_val", n_val)):
            if value < n_tasks:  # class-balanced: one example per task at least
                message = f"{name} must be >= n_tasks={n_tasks}, got {value}"
                errors.append(field_error(("problem", name), value, message))
        if inner.batch_size is not None:
            message = f"batch_size is for a data set with a task column, not the paper's {ref!r}"
            errors.append(field_error(("inner", "batch_size"), inner.batch_size, message))
        return errors

    def fit(self, options: TaskInteractionSpec, data: DatasetInfo) -> list[InitErrorDetails]:
        missing = data.missing_task_columns()
        if not missing:
            return []
        message = (
            f"task_interaction needs a task column or one of {', '.join(PAPER_TASK_SETS)}; "
            f"{data.name} has no {', '.join(missing)}"
        )
        return [field_error(("problem", "dataset"), options.dataset, message, "dataset")]

    def sizes(
        self, options: TaskInteractionSpec, inner: Any, data: DatasetInfo | None
    ) -> Sizes | None:
        if data is None:
            if options.dataset not in PAPER_TASK_SETS:
                return None
            (V, n, _), d = options.paper_sizes(), _FEATURES[options.dataset] + 1
            params = V * d
            # logits and softmax of the training rows, and the V x V x d differences w_i - w_j
            step = 6 * n * V + 2 * V * V * d + 4 * params
            return Sizes(state=params, step=step, hparams=V * V + 1)
        V, d, n = max(data.n_tasks, 1), data.n_features, data.rows["train"]
        r = min(inner.batch_size or n, n)
        params = V * data.outputs * (d + 1)
        step = r * (d + 1) + 2 * r * V * data.outputs + 4 * params
        return Sizes(state=params, step=step, hparams=V * V + 1)


TASK_INTERACTION = _TaskInteraction()
