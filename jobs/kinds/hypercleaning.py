"""Data hypercleaning (Section 4.2.1): one learned weight per training example."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field
from pydantic_core import InitErrorDetails

from jobs.kinds.base import DatasetInfo, ProblemKind, Sizes, SpecModel, field_error
from jobs.kinds.tables import UUID_PATTERN, is_dataset_id

__all__ = ["HYPERCLEANING", "HypercleaningSpec"]

# the data sets hypercleaning loads itself; features before the bias column, 10 classes each
_FEATURES = {"digits": 64, "mnist": 784, "fashion-mnist": 784}
_CLASSES = 10


class HypercleaningSpec(SpecModel):
    """Data hypercleaning (Section 4.2.1): one weight per training example.

    Half the training labels are corrupted. ``digits`` needs no data; ``mnist`` reads the
    worker's ``BILEVEL_DATA_DIR``. On a team's classification data set (its id) the file's
    splits are used as they are (standardised; ``n_train`` and ``n_val`` do not apply) and
    ``fraction`` may be 0: a user's labels are often noisy already. The learned weights are
    ``example_weights`` (logits, one per training example).
    """

    kind: Literal["hypercleaning"]
    dataset: Annotated[
        str,
        Field(
            pattern=f"^({'|'.join(_FEATURES)}|{UUID_PATTERN})$",
            description="digits, mnist, fashion-mnist, or a classification data set's id",
        ),
    ] = "digits"
    # None, not 1000/500: the stored spec has every default filled in and is checked again
    # on the worker, where a filled-in size would read as one given for an uploaded data set
    n_train: Annotated[
        int | None,
        Field(ge=10, le=30_000, description="built-in data sets only; default 1000"),
    ] = None
    n_val: Annotated[
        int | None,
        Field(ge=10, le=30_000, description="built-in data sets only; default 500"),
    ] = None
    fraction: Annotated[float, Field(ge=0, le=1)] = 0.5
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0

    def sizes(self) -> tuple[int, int]:
        """``(n_train, n_val)`` on a built-in data set, defaults filled in."""
        return self.n_train or 1000, self.n_val or 500


class _Hypercleaning(ProblemKind):
    name = "hypercleaning"
    options = HypercleaningSpec
    factory = "worker.factories:hypercleaning"
    reads_dataset = True
    batches = True
    outer_batches = True

    def dataset(self, options: HypercleaningSpec) -> tuple[str, str] | None:
        return ("dataset", options.dataset) if is_dataset_id(options.dataset) else None

    def checks(self, options: HypercleaningSpec, inner: Any) -> list[InitErrorDetails]:
        if not is_dataset_id(options.dataset):
            return []
        message = (
            "{} applies to the built-in data sets; an uploaded one's splits are used as they are"
        )
        return [
            field_error(("problem", name), getattr(options, name), message.format(name))
            for name in ("n_train", "n_val")
            if getattr(options, name) is not None
        ]

    def fit(self, options: HypercleaningSpec, data: DatasetInfo) -> list[InitErrorDetails]:
        if data.task == "classification":
            return []
        message = f"hypercleaning needs class labels; {data.name} is {data.task}"
        return [field_error(("problem", "dataset"), options.dataset, message, "dataset")]

    def sizes(self, options: HypercleaningSpec, inner: Any, data: DatasetInfo | None) -> Sizes:
        if data is not None:
            n, classes, features = data.rows["train"], data.n_classes, data.n_features
        else:
            n, classes, features = options.sizes()[0], _CLASSES, _FEATURES[options.dataset]
        params = classes * (features + 1)
        r = min(inner.batch_size or n, n)
        # the step's training rows: logits, softmax, residual and their gradients
        return Sizes(state=params, step=6 * r * classes + 2 * r + 4 * params, hparams=n)

    def rows(self, options: HypercleaningSpec, data: DatasetInfo | None) -> dict[str, int]:
        if data is not None:
            return dict(data.rows)
        n_train, n_val = options.sizes()
        return {"train": n_train, "val": n_val}

    def size_field(self, options: HypercleaningSpec) -> tuple[tuple[str, ...], Any] | None:
        if is_dataset_id(options.dataset):
            return None
        return ("problem", "n_train"), options.sizes()[0]


HYPERCLEANING = _Hypercleaning()
