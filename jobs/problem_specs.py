"""The ``problem`` part of a job spec: one strict option model per built-in problem kind.

``problem.kind`` selects the model from :data:`BUILTIN_PROBLEMS` (or from an installed
plugin's, :mod:`jobs.problem_kinds`); a kind over a data set names it in
``problem.dataset`` (an uploaded data set's id, or a built-in table). Like the rest of the
spec (:mod:`jobs.spec`), nothing here imports torch.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BUILTIN_PROBLEMS",
    "BUILTIN_TABLES",
    "DATASET_KINDS",
    "PAPER_TASK_SETS",
    "TASK_TABLES",
    "UUID_PATTERN",
    "BuiltinProblemSpec",
    "CounterexampleSpec",
    "DatasetRef",
    "FeatureRegularizationSpec",
    "HypercleaningSpec",
    "MLPSpec",
    "OneShotSpec",
    "QuadraticSpec",
    "SpecModel",
    "TaskInteractionSpec",
    "ToyBiasedSpec",
    "ToySpec",
]

_STRICT = ConfigDict(strict=True, extra="forbid", frozen=True)
_Coord = Annotated[float, Field(ge=-1e3, le=1e3)]
_Point2 = Annotated[list[_Coord], Field(min_length=2, max_length=2)]


class SpecModel(BaseModel):
    """A part of the job spec: strict types, no unknown fields, immutable."""

    model_config = _STRICT


# -- problems ------------------------------------------------------------------------------


class ToySpec(SpecModel):
    """Section 4.1's two-dimensional problem."""

    kind: Literal["toy"]
    w0: _Point2 = [2.0, 2.0]


class ToyBiasedSpec(SpecModel):
    """The toy problem with the biased upper objective ``f~``."""

    kind: Literal["toy_biased"]
    w0: _Point2 = [2.0, 2.0]


class CounterexampleSpec(SpecModel):
    """Theorem 3.5's scalar counterexample."""

    kind: Literal["counterexample"]
    lam0: Annotated[float, Field(ge=-1e3, le=1e3)] = 2.0
    w0: Annotated[float, Field(ge=-1e3, le=1e3)] = 1.0


class QuadraticSpec(SpecModel):
    """A random strongly convex quadratic with closed-form hypergradients."""

    kind: Literal["quadratic"]
    dim: Annotated[int, Field(ge=1, le=4096)] = 8
    n_hparams: Annotated[int, Field(ge=1, le=1024)] = 3
    mu: Annotated[float, Field(gt=0, le=1e3)] = 0.2
    L: Annotated[float, Field(gt=0, le=1e3)] = 1.0
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0
    rho: Annotated[float, Field(ge=0, le=1e3)] = 0.0
    init_depends_on_hparams: bool = False
    structured: bool = False


#: scikit-learn's bundled tables, usable wherever a spec names a data set
BUILTIN_TABLES = ("digits", "diabetes", "breast_cancer")
UUID_PATTERN = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
DatasetRef = Annotated[
    str,
    Field(
        pattern=f"^({UUID_PATTERN}|{'|'.join(BUILTIN_TABLES)})$",
        description="a data set id (POST /v1/datasets) of the team, or a built-in table",
    ),
]


_HYPERCLEANING_SETS = ("digits", "mnist", "fashion-mnist")


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
            pattern=f"^({'|'.join(_HYPERCLEANING_SETS)}|{UUID_PATTERN})$",
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


# -- problems over a data set (issue 13) -----------------------------------------------------


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


class MLPSpec(SpecModel):
    """A small tanh MLP with learned per-layer weight decay (``layer_decay``, logs).

    ``example_weights`` also learns one weight per training example (``example_weights``,
    logits); ``inner.learn_lr`` learns the inner step size.
    """

    kind: Literal["mlp"]
    dataset: DatasetRef
    hidden: Annotated[
        list[Annotated[int, Field(ge=1, le=1024)]], Field(min_length=1, max_length=4)
    ] = [32]
    example_weights: bool = False
    init_decay: Annotated[float, Field(gt=0, le=1e3)] = 1e-3
    standardize: bool = True


#: the paper's task-interaction setup (Section 4.2.2): each class of one of these is a task
PAPER_TASK_SETS = ("digits", "mnist", "fashion-mnist", "omniglot")


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


class OneShotSpec(SpecModel):
    """One-shot classification on Omniglot with a learned hyper-representation (Sec. 4.2.3).

    Figure 8's network: two shared conv layers (the hyper-representation ``λ``), two
    task-specific conv layers and a ``ways``-way classifier (``w``) of ``width`` kernels per
    layer, on ``meta_batch`` tasks of ``ways`` classes with ``shots`` training and
    ``queries`` validation examples each, drawn afresh every hyper-iteration
    (``outer.iterations`` of them) from the 1200 meta-training characters. The inner step
    size is always learned (``log_lr``, App. G.3). At the end the learned ``λ`` is evaluated
    on ``eval_tasks`` tasks of the 323 meta-test characters: ``metrics.test_accuracy`` with
    the half-width of its 95% interval, ``metrics.test_accuracy_ci95``. Omniglot is read
    from the worker's ``BILEVEL_DATA_DIR``.
    """

    kind: Literal["one_shot"]
    ways: Annotated[int, Field(ge=2, le=20)] = 5
    shots: Annotated[int, Field(ge=1, le=10)] = 1
    # Omniglot has 20 drawings per character: shots + queries <= 20 (checked in check_spec)
    queries: Annotated[int, Field(ge=1, le=19)] = 15
    meta_batch: Annotated[int, Field(ge=1, le=32)] = 4
    width: Annotated[int, Field(ge=1, le=128)] = 64
    eval_tasks: Annotated[int, Field(ge=1, le=2000)] = 120
    rho_init: Annotated[float, Field(gt=0, le=1e3)] = 0.1
    regularize: bool = True


# kinds whose `problem.dataset` names a data set, and which take `inner.batch_size`
DATASET_KINDS = ("feature_regularization", "mlp", "task_interaction")
# the built-in tables with a task column (task_<split>)
TASK_TABLES = ("diabetes",)


# `problem.kind` -> its option model; keys match `core.problems.PROBLEMS` (a test checks it).
BUILTIN_PROBLEMS: dict[str, type[SpecModel]] = {
    "toy": ToySpec,
    "toy_biased": ToyBiasedSpec,
    "counterexample": CounterexampleSpec,
    "quadratic": QuadraticSpec,
    "hypercleaning": HypercleaningSpec,
    "feature_regularization": FeatureRegularizationSpec,
    "mlp": MLPSpec,
    "task_interaction": TaskInteractionSpec,
    "one_shot": OneShotSpec,
}

BuiltinProblemSpec = (
    ToySpec
    | ToyBiasedSpec
    | CounterexampleSpec
    | QuadraticSpec
    | HypercleaningSpec
    | FeatureRegularizationSpec
    | MLPSpec
    | TaskInteractionSpec
    | OneShotSpec
)
