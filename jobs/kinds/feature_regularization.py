"""Linear, logistic or softmax regression with one learned L2 penalty per feature (or group)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field
from pydantic_core import InitErrorDetails

from jobs.kinds.base import DatasetInfo, ProblemKind, Sizes, SpecModel, field_error
from jobs.kinds.tables import DatasetRef

__all__ = ["FEATURE_REGULARIZATION", "FeatureRegularizationSpec"]


class FeatureRegularizationSpec(SpecModel):
    """Linear, logistic or softmax regression with one learned L2 penalty per feature.

    ``per: group`` shares one penalty among the features of each group (the data set's
    ``groups`` array). The learned ``feature_penalties`` are logs of the penalties.
    """

    kind: Literal["feature_regularization"]
    dataset: DatasetRef
    model: Literal["linear", "logistic", "softmax"] | None = None
    per: Literal["feature", "group"] = "feature"
    init_penalty: Annotated[float, Field(gt=0, le=1e3)] = 1e-3
    standardize: bool = True


class _FeatureRegularization(ProblemKind):
    name = "feature_regularization"
    options = FeatureRegularizationSpec
    factory = "worker.factories:feature_regularization"
    reads_dataset = True
    batches = True

    def dataset(self, options: FeatureRegularizationSpec) -> tuple[str, str]:
        return "dataset", options.dataset

    def fit(self, options: FeatureRegularizationSpec, data: DatasetInfo) -> list[InitErrorDetails]:
        p, errors = options, []
        if p.model is not None and (p.model == "linear") != (data.task == "regression"):
            message = f"model {p.model!r} does not fit a {data.task} data set"
            errors.append(field_error(("problem", "model"), p.model, message, "dataset"))
        if p.model == "logistic" and data.n_classes != 2:
            message = f"logistic needs 2 classes; the data set has {data.n_classes}"
            errors.append(field_error(("problem", "model"), p.model, message, "dataset"))
        if p.per == "group" and "groups" not in data.arrays:
            message = "per='group' needs a 'groups' array in the data set"
            errors.append(field_error(("problem", "per"), p.per, message, "dataset"))
        return errors

    def sizes(
        self, options: FeatureRegularizationSpec, inner: Any, data: DatasetInfo | None
    ) -> Sizes | None:
        if data is None:
            return None
        d, n = data.n_features, data.rows["train"]
        r = min(inner.batch_size or n, n)
        softmax = options.model == "softmax" or (options.model is None and data.outputs > 1)
        k = data.n_classes if softmax else 1
        params = k * (d + 1)
        # the step's rows with their bias column, a few arrays of outputs, the gradients
        return Sizes(state=params, step=r * (d + 1) + 4 * r * k + 4 * params, hparams=d)


FEATURE_REGULARIZATION = _FeatureRegularization()
