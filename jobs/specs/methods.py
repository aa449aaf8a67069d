"""The ``hypergradient`` section of a job spec: one option model per method.

``method`` chooses the model (a discriminated union), so a spec names only registered
estimators. Split from :mod:`jobs.specs.job`, which composes the whole spec. No torch here either.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from jobs.kinds.base import SpecModel

__all__ = [
    "METHODS",
    "AutoSpec",
    "CheckpointedSpec",
    "F2SASpec",
    "ForwardSpec",
    "FullSpec",
    "ImplicitSpec",
    "MethodSpec",
    "SABASpec",
    "SOBASpec",
    "SingleLoopSpec",
    "TruncatedSpec",
]

# -- hypergradient methods -------------------------------------------------------------------


class _MethodSpec(SpecModel):
    """Options every method takes.

    ``graphed``: on a CUDA worker, replay each hypergradient as one CUDA graph
    (``core.Graphed``) when the method unrolls (full, truncated, checkpointed, auto) and the
    problem's losses allow it (``true``, the default); ``false`` always runs eagerly. The
    summary records whether the job ran graphed and, if not, why. A boolean rather than
    ``"auto" | false``: generated clients cannot type a mixed enum.
    """

    graphed: bool = Field(
        default=True,
        description="true: CUDA-graph each hypergradient where the worker and problem allow it; "
        "false: always eager",
    )


class _Compilable(_MethodSpec):
    """An unrolled reverse method, whose inner steps may run through ``torch.compile``.

    ``compile``: ``"on"`` runs them as :class:`core.Compiled` (the first hypergradient
    compiles, seconds; every later one is faster), ``"off"`` eagerly, and ``"auto"`` (the
    default) compiles when the job's estimated eager run time is well above the compile time
    measured on the worker (``worker.compile_choice``). The summary's ``compile`` says
    ``{used, seconds, reason}``. ``true``/``false`` are read as ``"on"``/``"off"`` (specs
    stored before ``"auto"``); a string enum, not a mixed one, so generated clients type it.
    """

    compile: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="auto: compile the inner steps when the job runs well above the compile "
        "time; on: always; off: never (true/false are read as on/off)",
    )

    @field_validator("compile", mode="before")
    @classmethod
    def _boolean(cls, value: Any) -> Any:
        """``true``/``false``, as specs said before ``"auto"``, become ``"on"``/``"off"``."""
        return ("on" if value else "off") if isinstance(value, bool) else value


class FullSpec(_Compilable):
    """Reverse mode through every inner step (exact)."""

    method: Literal["full"]


class TruncatedSpec(_Compilable):
    """K-RMD: back-propagate through the last ``K`` steps."""

    method: Literal["truncated"]
    K: Annotated[
        int,
        Field(
            ge=1,
            le=100_000,
            description="steps to unroll back; must be <= inner.steps (checked on submit: "
            "422 naming hypergradient.K)",
        ),
    ]
    store: Literal["graph", "iterates"] = "graph"


class ForwardSpec(_MethodSpec):
    """Forward mode (exact), ``chunk`` directions at a time."""

    method: Literal["forward"]
    chunk: Annotated[int, Field(ge=1, le=100_000)] | None = None


class CheckpointedSpec(_Compilable):
    """Reverse mode storing every ``segment``-th state (exact)."""

    method: Literal["checkpointed"]
    segment: (
        Annotated[
            int,
            Field(
                ge=1,
                le=100_000,
                # JSON Schema cannot relate two fields: stated here, checked by check_spec
                description="store every segment-th inner state; must be <= inner.steps "
                "(a larger one is refused with 422 naming hypergradient.segment)",
            ),
        ]
        | None
    ) = None


class ImplicitSpec(_MethodSpec):
    """The implicit-function hypergradient at ``w_T`` (CG or Neumann)."""

    method: Literal["implicit"]
    solver: Literal["cg", "neumann"] = "cg"
    iters: Annotated[int, Field(ge=1, le=100_000)] = 100
    tol: Annotated[float, Field(gt=0, le=1.0)] = 1e-10
    alpha: Annotated[float, Field(gt=0, le=1e3)] | None = None
    strict: bool = False


class AutoSpec(_Compilable):
    """Auto-K: the largest K-RMD whose graph fits ``memory_mb`` MiB (full RMD if T steps fit).

    The worker measures one recorded step's bytes and the unroll's contraction at the start
    (``core.choose_truncation``) and records the choice and Prop. 3.1's bound in the summary.
    """

    method: Literal["auto"]
    memory_mb: Annotated[float, Field(gt=0, le=1e6)]


class SingleLoopSpec(_MethodSpec):
    """A single-loop method (``core.single_loop``): ``w`` and ``λ`` move together.

    One outer iteration is one step on one inner and one outer batch of the problem
    (``inner.batch_size`` training rows, ``outer.batch_size`` validation rows; the whole
    objectives without them); ``inner.lr`` is the inner step,
    ``outer.lr`` the outer one, ``outer.iterations`` counts steps and ``outer.schedule``
    applies to both steps (SABA takes constant steps only). ``inner.steps`` sets only the
    full-RMD unroll of the job's final report; ``outer.optimizer`` is not used.
    """


class SOBASpec(SingleLoopSpec):
    """SOBA (Dagréou et al. 2022): one Hessian- and Jacobian-vector product a step."""

    method: Literal["soba"]


class SABASpec(SingleLoopSpec):
    """SABA: SOBA with a SAGA memory of one direction per batch (variance-reduced)."""

    method: Literal["saba"]


class F2SASpec(SingleLoopSpec):
    """F2SA (Kwon et al. 2023): first-order only, a penalty ``σ`` growing to ``penalty_max``."""

    method: Literal["f2sa"]
    penalty: Annotated[float, Field(ge=1, le=1e8)] = 1.0
    penalty_growth: Annotated[float, Field(ge=0, le=1e8)] = 0.1
    penalty_max: Annotated[
        float, Field(ge=1, le=1e12, description="must be >= penalty (checked by the worker)")
    ] = 1e4


METHODS: dict[str, type[SpecModel]] = {
    "full": FullSpec,
    "truncated": TruncatedSpec,
    "forward": ForwardSpec,
    "checkpointed": CheckpointedSpec,
    "implicit": ImplicitSpec,
    "auto": AutoSpec,
    "soba": SOBASpec,
    "saba": SABASpec,
    "f2sa": F2SASpec,
}

MethodSpec = Annotated[
    FullSpec
    | TruncatedSpec
    | ForwardSpec
    | CheckpointedSpec
    | ImplicitSpec
    | AutoSpec
    | SOBASpec
    | SABASpec
    | F2SASpec,
    Field(discriminator="method"),
]
