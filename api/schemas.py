"""Response bodies of the REST API (``JobPublic``, ``JobsPublic``, ...) and OpenAPI helpers.

The models' docstrings become the descriptions of their schemas in ``/openapi.json``, and so
of the classes a client generator writes from it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from jobs.models import ApiKey, Job
from jobs.specs.job import TEXT
from jobs.status import JobStatus

__all__ = [
    "BINARY_SCHEMA",
    "NPZ",
    "FieldError",
    "Health",
    "JobError",
    "JobPublic",
    "JobResult",
    "JobsPublic",
    "KeyCreate",
    "KeyCreated",
    "KeyPublic",
    "KeysPublic",
    "PluginSource",
    "Problem",
    "Progress",
    "Readiness",
    "TracePublic",
    "auth_responses",
    "file_doc",
    "links_to",
    "problem_doc",
]

#: The media type of a NumPy ``.npz`` archive (``numpy.savez``), as the hparams route sends it.
NPZ = "application/x-npz"
#: The JSON Schema of a body of raw bytes: generators make a file or bytes type of it.
BINARY_SCHEMA: dict[str, Any] = {"type": "string", "format": "binary"}


class FieldError(BaseModel):
    """One invalid field of a request: its dotted path, location and what is wrong."""

    field: str
    loc: list[str]
    message: str
    type: str


class Problem(BaseModel):
    """An RFC 9457 problem document (``application/problem+json``)."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None


def problem_doc(description: str) -> dict[str, Any]:
    """An OpenAPI ``responses`` entry: a :class:`Problem` as ``application/problem+json``.

    Args:
        description: when the route answers with this status.

    Returns:
        The entry, for a route's or a router's ``responses``.
    """
    return {"model": Problem, "description": description,
            "content": {"application/problem+json": {}}}  # fmt: skip


def auth_responses(*, quota: bool = False, store: bool = True) -> dict[int | str, Any]:
    """The ``responses`` every authenticated router shares: 401, 429 and (``store``) 503.

    Args:
        quota: the router's routes also answer 429 for a team's quota (submits).
        store: the router's routes read the job store (503 while it is away).
    """
    limit = "rate limit or team quota exceeded" if quota else "rate limit exceeded"
    responses: dict[int | str, Any] = {
        401: problem_doc("missing, unknown or revoked API key"),
        429: problem_doc(f"{limit}, or too many wrong keys; see Retry-After"),
    }
    if store:
        responses[503] = problem_doc("the job store is unavailable; retry after Retry-After")
    return responses


def links_to(
    path: str, param: str, field: str, operations: dict[str, tuple[str, str]]
) -> dict[str, Any]:
    """OpenAPI links from a response's ``field`` to the operations on that object.

    Clients and stateful fuzzers (schemathesis) follow them: a created object's id is fed
    to the routes that read, change or delete it.

    Args:
        path: the object's path template, e.g. ``/v1/jobs/{job_id}``.
        param: its path parameter, e.g. ``job_id``.
        field: the response body's field holding the value, e.g. ``id``.
        operations: link name -> (suffix of ``path``, method), e.g.
            ``{"GetTrace": ("/trace", "get")}``.

    Returns:
        The ``links`` member of a response's documentation.
    """

    def ref(p: str) -> str:  # a JSON pointer's escapes, then the template's braces
        return p.replace("~", "~0").replace("/", "~1").replace("{", "%7B").replace("}", "%7D")

    return {
        name: {
            "operationRef": f"#/paths/{ref(path + suffix)}/{method}",
            "parameters": {param: f"$response.body#/{field}"},
        }
        for name, (suffix, method) in operations.items()
    }


def file_doc(media_type: str, description: str) -> dict[str, Any]:
    """An OpenAPI ``responses`` entry: a file of ``media_type``, with a binary schema.

    A route that returns a plain ``Response`` documents no schema, and generators then drop
    the body (or the whole operation); ``{"type": "string", "format": "binary"}`` makes them
    return the bytes.

    Args:
        media_type: the ``Content-Type`` the route sends.
        description: what the file holds.

    Returns:
        The entry, for a route's ``responses``.
    """
    return {"description": description, "content": {media_type: {"schema": BINARY_SCHEMA}}}


class Health(BaseModel):
    """The process is up."""

    status: Literal["ok"]


class Readiness(Health):
    """The database and the broker (or the embedded executor) answer."""

    database: str = Field(description="`ok`, else `error: <exception type>`")
    broker: str = Field(description="`ok`, else `unreachable`")


class Progress(BaseModel):
    """How far a job is: iterations done of its total, and the estimated time left."""

    iteration: int
    iterations: int
    fraction: float
    eta_s: float | None = None


class JobError(BaseModel):
    """Why a job failed: the error's type, its message and the iteration it happened at."""

    type: str
    detail: str
    iteration: int | None = None


class PluginSource(BaseModel):
    """The installed plugin package a problem kind comes from, and its version."""

    package: str
    version: str


class JobPublic(BaseModel):
    """A job as the API shows it: spec, status, progress, summary and error.

    ``plugin`` names the package (and its version at submission) that added the job's
    problem kind; ``null`` for a built-in kind.
    """

    id: uuid.UUID
    name: str
    status: JobStatus
    queue: str
    spec: dict[str, Any]
    plugin: PluginSource | None = None
    progress: Progress
    attempts: int
    cancel_requested: bool
    summary: dict[str, Any] | None = None
    error: JobError | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime

    @classmethod
    def of(cls, job: Job) -> JobPublic:
        """The public view of a job row."""
        n = max(job.iterations, 1)
        error = None
        if job.error:
            error = JobError(
                type=job.error.get("type", "Error"),
                detail=job.error.get("detail", ""),
                iteration=job.error.get("iteration"),
            )
        return cls(
            id=job.id,
            name=job.name,
            status=job.status,
            queue=job.queue,
            spec=job.spec,
            plugin=PluginSource.model_validate(job.plugin) if job.plugin else None,
            progress=Progress(
                iteration=job.iteration,
                iterations=job.iterations,
                fraction=round(job.iteration / n, 6),
                eta_s=job.eta_s,
            ),
            attempts=job.attempts,
            cancel_requested=job.cancel_requested,
            summary=job.summary,
            error=error,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            updated_at=job.updated_at,
        )


class JobsPublic(BaseModel):
    """A page of jobs, newest first; ``next_cursor`` asks for the next (older) page."""

    data: list[JobPublic]
    count: int
    next_cursor: str | None = None


class JobResult(BaseModel):
    """The final metrics and hyperparameters of a succeeded job."""

    id: uuid.UUID
    status: JobStatus
    iterations: int
    final_outer_loss: float | None = None
    best_outer_loss: float | None = None
    best_iteration: int | None = None
    metrics: dict[str, float]
    hparams: Any = None


class TracePublic(BaseModel):
    """Columns of the trace; only the requested fields are present."""

    iteration: list[int]
    outer_loss: list[float | None] | None = None
    grad_norm: list[float | None] | None = None
    lr: list[float | None] | None = None
    time_s: list[float | None] | None = None
    exact_norm: list[float | None] | None = None
    cosine: list[float | None] | None = None
    rel_error: list[float | None] | None = None
    descent_ratio: list[float | None] | None = None
    peak_bytes: list[float | None] | None = None


class KeyPublic(BaseModel):
    """An API key as listed: never its secret part, which is not stored."""

    prefix: str
    name: str
    scope: Literal["team", "admin"]
    created_at: datetime
    revoked_at: datetime | None = None

    @classmethod
    def of(cls, key: ApiKey) -> KeyPublic:
        """The public view of a key row."""
        return cls(prefix=key.prefix, name=key.name, scope=key.scope,
                   created_at=key.created_at, revoked_at=key.revoked_at)  # fmt: skip


class KeysPublic(BaseModel):
    """The team's keys, oldest first."""

    data: list[KeyPublic]
    count: int


class KeyCreate(BaseModel):
    """A new key for the caller's team."""

    model_config = ConfigDict(strict=True, extra="forbid")

    name: Annotated[str, Field(max_length=100, pattern=TEXT)] = ""
    scope: Literal["team", "admin"] = "team"


class KeyCreated(KeyPublic):
    """The new key, with its plaintext: shown this once, stored only as a keyed hash."""

    key: str
