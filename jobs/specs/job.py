"""The job spec: what a scientist submits, validated strictly before anything runs.

Every model forbids unknown fields and runs in pydantic's strict mode (no ``"5"`` for ``5``);
every number has bounds. ``problem.kind`` and ``hypergradient.method`` select option models
from registries, so a spec names only registered problems and estimators and nothing in it
is ever executed. Checks that span fields (``K <= inner.steps``) run in :func:`check_spec`
and report the field path, e.g. ``("hypergradient", "K")``.

This module imports no torch: the API validates specs without the estimator library.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError
from pydantic_core import InitErrorDetails

from jobs.kinds.base import DatasetInfo, SpecModel, field_error, raise_errors
from jobs.kinds.registry import KINDS, PROBLEMS, ProblemSpec
from jobs.specs.methods import (
    METHODS,
    AutoSpec,
    CheckpointedSpec,
    MethodSpec,
    SingleLoopSpec,
    TruncatedSpec,
)
from jobs.status import QueueKind

__all__ = [
    "METHODS",
    "PROBLEMS",
    "TEXT",
    "AutoSpec",
    "DiagnosticsSpec",
    "InnerSpec",
    "JobSpec",
    "OuterSpec",
    "ProblemSpec",
    "SingleLoopSpec",
    "StallSpec",
    "batch_size_errors",
    "check_spec",
    "field_errors",
    "parse_spec",
    "spec_errors",
]

# -- the rest of the job ---------------------------------------------------------------------


class InnerSpec(SpecModel):
    """The inner optimizer: ``steps`` of gradient descent with optional momentum."""

    steps: Annotated[int, Field(ge=1, le=100_000)]
    lr: Annotated[float, Field(gt=0, le=1e3)] = 0.1
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.0
    learn_lr: bool = False
    # training rows per inner step, drawn from the job's seed and the step index (problems
    # over a data set only); None: every row at every step
    batch_size: Annotated[int, Field(ge=1, le=10_000_000)] | None = None
    warm_start: bool = Field(
        default=False,
        description="start each hyper-iteration's unroll from the previous one's w_T (kept "
        "in checkpoints); minibatches then run on across hyper-iterations",
    )
    schedule: Literal["constant", "inv_sqrt"] = Field(
        default="constant", description="the inner step size across hyper-iterations"
    )


class StallSpec(SpecModel):
    """Stop early, as converged, once the outer loss and the hypergradient norm stand still.

    Both must have moved by at most ``tolerance`` (relative to their size) over the last
    ``window`` hyper-iterations; the job then ends ``succeeded`` with its result there.
    """

    window: Annotated[int, Field(ge=2, le=100_000)]
    tolerance: Annotated[float, Field(gt=0, le=1.0)]


class OuterSpec(SpecModel):
    """The hyper-iterations: optimizer, step size, schedule and count."""

    optimizer: Literal["adam", "sgd"] = "adam"
    lr: Annotated[float, Field(gt=0, le=1e3)] = 0.1
    schedule: Literal["constant", "inv_sqrt"] = "constant"
    iterations: Annotated[int, Field(ge=1, le=1_000_000)]
    first_step_norm: Annotated[float, Field(gt=0, le=1e3)] | None = None
    # end the job `failed` (Diverged) at the first iteration whose outer loss or
    # hypergradient norm jumps by orders of magnitude (worker.divergence); else it goes on
    # and its summary's `warnings` say so
    stop_on_divergence: bool = False
    stop_when_stalled: StallSpec | None = None
    # validation rows per outer step (problems whose kind has outer batches): K-RMD then
    # estimates with one validation batch per hyper-iteration, a single-loop method draws
    # one per step; None: the whole validation set
    batch_size: (
        Annotated[
            int,
            Field(
                ge=1,
                le=10_000_000,
                description="validation rows per outer step; must be <= the validation rows "
                "(checked on submit: 422 naming outer.batch_size)",
            ),
        ]
        | None
    ) = None


class DiagnosticsSpec(SpecModel):
    """Compare with the exact hypergradient every ``every`` iterations (0: never)."""

    every: Annotated[int, Field(ge=0, le=1_000_000)] = 0


#: The pattern of every free-text field that is stored: PostgreSQL's text and jsonb cannot
#: hold U+0000 (a write would fail as a 503), so the schema says so and it answers 422.
TEXT = r"^[^\x00]*$"


class JobSpec(SpecModel):
    """A whole bilevel job, as submitted to ``POST /v1/jobs`` or ``bilevel run``."""

    name: Annotated[str, Field(min_length=1, max_length=200, pattern=TEXT)]
    problem: ProblemSpec
    inner: InnerSpec
    hypergradient: MethodSpec
    outer: OuterSpec
    diagnostics: DiagnosticsSpec = DiagnosticsSpec()
    device: Annotated[str, Field(pattern=r"^(auto|cpu|cuda(:[0-9]{1,2})?)$")] = "auto"
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0
    # running time summed over the job's attempts, checked between hyper-iterations;
    # past it the job ends `failed` (TimeLimitExceeded). None: the worker's max_job_time_s.
    time_limit_s: Annotated[float, Field(gt=0, le=30 * 86_400)] | None = None
    # the longest a hyper-iteration (the first one with the job's setup) may go without
    # completing; past it the worker's watchdog kills the job's process and the job ends
    # `failed` (IterationStalled). None: the worker's stall_s (30 minutes by default).
    stall_s: Annotated[float, Field(ge=1, le=86_400)] | None = None
    # orders the job among its team's queued jobs (jobs.fairshare); not across teams
    priority: Literal["low", "normal", "high"] = "normal"

    @property
    def queue_kind(self) -> QueueKind:
        """``gpu`` when the spec asks for CUDA, else ``cpu`` (``auto`` runs on CPU queues)."""
        return QueueKind.GPU if self.device.startswith("cuda") else QueueKind.CPU


def spec_errors(spec: JobSpec) -> list[InitErrorDetails]:
    """The rules that span fields: the method against the inner steps, then the kind's own.

    Each error is located at the field to change, e.g. ``("hypergradient", "K")``.
    """
    errors: list[InitErrorDetails] = []
    steps = spec.inner.steps
    method = spec.hypergradient
    if isinstance(method, TruncatedSpec) and steps < method.K:
        message = f"K must be <= inner.steps={steps}, got {method.K}"
        errors.append(field_error(("hypergradient", "K"), method.K, message))
    if isinstance(method, AutoSpec) and steps < 2:
        message = f"method auto measures two steps: inner.steps must be >= 2, got {steps}"
        errors.append(field_error(("inner", "steps"), steps, message))
    if isinstance(method, CheckpointedSpec) and method.segment and method.segment > steps:
        message = f"segment must be <= inner.steps={steps}, got {method.segment}"
        errors.append(field_error(("hypergradient", "segment"), method.segment, message))
    kind = KINDS[spec.problem.kind]
    batch_size = spec.inner.batch_size
    if batch_size is not None and not kind.batches:
        batching = ", ".join(k for k, v in KINDS.items() if v.batches)
        message = (
            f"batch_size is for the problems over a data set ({batching}), "
            f"not {spec.problem.kind!r}"
        )
        errors.append(field_error(("inner", "batch_size"), batch_size, message))
    outer_size = spec.outer.batch_size
    if outer_size is not None and not kind.outer_batches:
        batching = ", ".join(k for k, v in KINDS.items() if v.outer_batches)
        message = (
            f"outer.batch_size is for the problems with validation batches ({batching}), "
            f"not {spec.problem.kind!r}"
        )
        errors.append(field_error(("outer", "batch_size"), outer_size, message))
    return errors + kind.checks(spec.problem, spec.inner)


def batch_size_errors(spec: JobSpec, data: DatasetInfo | None = None) -> list[InitErrorDetails]:
    """Batch sizes larger than the split they cut, each located at its field.

    ``inner.batch_size`` is held to the training rows, ``outer.batch_size`` to the
    validation rows (where the kind knows them: :meth:`~jobs.kinds.base.ProblemKind.rows`).

    ``data``: what the store knows of the data set the spec names, if it names one.
    """
    rows = KINDS[spec.problem.kind].rows(spec.problem, data)
    errors: list[InitErrorDetails] = []
    for loc, size, split, what in (
        (("inner", "batch_size"), spec.inner.batch_size, "train", "training"),
        (("outer", "batch_size"), spec.outer.batch_size, "val", "validation"),
    ):
        n = None if rows is None else rows.get(split)
        if size is not None and n is not None and size > n:
            message = f"{'.'.join(loc)} must be <= the {n} {what} rows of the problem, got {size}"
            errors.append(field_error(loc, size, message, "dataset"))
    return errors


def check_spec(spec: JobSpec) -> JobSpec:
    """Run the checks that span fields; raise a ``ValidationError`` naming each bad field."""
    raise_errors(spec_errors(spec))
    return spec


def parse_spec(data: Any) -> JobSpec:
    """Validate a spec given as a dict, JSON text or bytes.

    Raises:
        pydantic.ValidationError: each error with its field path (``loc``).
    """
    if isinstance(data, (str, bytes, bytearray)):
        spec = JobSpec.model_validate_json(data)
    else:
        spec = JobSpec.model_validate(data)
    return check_spec(spec)


# Union members show up in pydantic's locations as their tag: ("problem", "toy", "w0").
_UNIONS = {"problem": "kind", "hypergradient": "method"}


def field_errors(exc: ValidationError | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each error as ``{"field": "problem.w0", "loc": [...], "message", "type"}``.

    Locations drop the union tag pydantic inserts after ``problem`` and ``hypergradient``,
    and an unknown or missing tag is reported at ``problem.kind`` / ``hypergradient.method``.
    """
    raw = exc.errors(include_url=False) if isinstance(exc, ValidationError) else exc
    out = []
    for err in raw:
        loc = [str(x) for x in err["loc"]]
        if loc and loc[0] == "body":
            loc = loc[1:]
        if len(loc) >= 2 and loc[0] in _UNIONS and err["type"] not in ("union_tag_invalid",):
            tag_model = PROBLEMS if loc[0] == "problem" else METHODS
            if loc[1] in tag_model:
                loc = [loc[0], *loc[2:]]
        if len(loc) == 1 and loc[0] in _UNIONS and err["type"].startswith("union_tag"):
            loc = [loc[0], _UNIONS[loc[0]]]
        out.append(
            {
                "field": ".".join(loc) or "(body)",
                "loc": loc,
                "message": err["msg"],
                "type": err["type"],
            }
        )
    return out
