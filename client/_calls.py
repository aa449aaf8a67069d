"""Each operation of the API as a :class:`Call`: what to send and how to read the answer.

The sync :class:`~client.Client` and the async :class:`~client.AsyncClient` send the same
calls through their own transport (:mod:`client._transport`), so a route's path, its
parameters and the model of its answer are written once, here.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from client.models import Dataset, Datasets, Job, JobResult, Jobs, Studies, Study
from client.trace import Trace

if TYPE_CHECKING:
    import httpx
    from pydantic import BaseModel

__all__ = ["Call", "spec_text"]

T = TypeVar("T")
M = TypeVar("M", bound="BaseModel")

# a data set's file is checked whole by the server before it answers: a long read timeout
UPLOAD_READ_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request and the parser of its answer.

    Attributes:
        safe: the request may be sent again after it failed midway (a read, or a create
            that carries an ``Idempotency-Key``): the retry cannot create a second object.
        body: the request's bytes, or a function giving a fresh iterator over them for each
            attempt (a file streamed from disk).
    """

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: Mapping[str, Any] | None = None
    body: bytes | Callable[[], Iterable[bytes]] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    safe: bool = True
    long_read: bool = False


def _model(cls: type[M]) -> Callable[[httpx.Response], M]:
    return lambda r: cls.model_validate_json(r.content)


def spec_text(spec: Any) -> str:
    """A job spec or study as JSON text.

    Args:
        spec: a dict, a pydantic model, a JSON object's text, or a path to a JSON file (a
            ``Path``, or a string that is not an object's text).
    """
    if isinstance(spec, str) and not spec.lstrip().startswith("{"):
        spec = Path(spec)
    if isinstance(spec, Path):
        return spec.read_text()
    if isinstance(spec, str):
        return spec
    if hasattr(spec, "model_dump_json"):
        return str(spec.model_dump_json())
    return json.dumps(spec)


def _create(path: str, spec: Any, key: str | None, parse: Callable[[httpx.Response], T]) -> Call[T]:
    # every create carries a key, so that a retry after a lost answer returns the first object
    headers = {"Content-Type": "application/json", "Idempotency-Key": key or str(uuid.uuid4())}
    return Call("POST", path, parse, body=spec_text(spec).encode(), headers=headers)


def submit_job(spec: Any, key: str | None) -> Call[Job]:
    return _create("/v1/jobs", spec, key, _model(Job))


def get_job(job_id: Any) -> Call[Job]:
    return Call("GET", f"/v1/jobs/{job_id}", _model(Job))


def list_jobs(status: str | None, limit: int, cursor: str | None) -> Call[Jobs]:
    params: dict[str, Any] = {"limit": limit}
    if status:
        params["status"] = str(status)
    if cursor:
        params["cursor"] = cursor
    return Call("GET", "/v1/jobs", _model(Jobs), params=params)


def cancel_job(job_id: Any) -> Call[Job]:
    # cancelling twice is cancelling once: safe to resend
    return Call("POST", f"/v1/jobs/{job_id}/cancel", _model(Job))


def job_result(job_id: Any) -> Call[JobResult]:
    return Call("GET", f"/v1/jobs/{job_id}/result", _model(JobResult))


def job_hparams(job_id: Any) -> Call[bytes]:
    return Call("GET", f"/v1/jobs/{job_id}/hparams", lambda r: r.content)


def job_trace(
    job_id: Any, fields: Iterable[str] | None, max_points: int | None, after: int
) -> Call[Trace]:
    params: dict[str, Any] = {"after": after}
    if max_points:
        params["max_points"] = max_points
    if fields:
        params["fields"] = ",".join(fields)
    return Call("GET", f"/v1/jobs/{job_id}/trace", lambda r: Trace(r.json()), params=params)


def submit_study(study: Any, key: str | None) -> Call[Study]:
    return _create("/v1/studies", study, key, _model(Study))


def search_around(job_id: Any, options: dict[str, Any], key: str | None) -> Call[Study]:
    return _create(f"/v1/jobs/{job_id}/search-around", options, key, _model(Study))


def get_study(study_id: Any) -> Call[Study]:
    return Call("GET", f"/v1/studies/{study_id}", _model(Study))


def list_studies(limit: int) -> Call[Studies]:
    return Call("GET", "/v1/studies", _model(Studies), params={"limit": limit})


def cancel_study(study_id: Any) -> Call[Study]:
    return Call("POST", f"/v1/studies/{study_id}/cancel", _model(Study))


def upload_dataset(
    name: str, body: bytes | Callable[[], Iterable[bytes]], size: int, key: str | None
) -> Call[Dataset]:
    headers = {
        "Content-Type": "application/octet-stream",
        # the length up front lets the server refuse a file over its limit before it is sent
        "Content-Length": str(size),
        "Idempotency-Key": key or str(uuid.uuid4()),
    }
    return Call("POST", "/v1/datasets", _model(Dataset), params={"name": name}, body=body,
                headers=headers, long_read=True)  # fmt: skip


def get_dataset(dataset_id: Any) -> Call[Dataset]:
    return Call("GET", f"/v1/datasets/{dataset_id}", _model(Dataset))


def list_datasets() -> Call[Datasets]:
    return Call("GET", "/v1/datasets", _model(Datasets))


def delete_dataset(dataset_id: Any) -> Call[Dataset]:
    # a delete resent after a lost answer would find nothing (404): not safe to resend
    return Call("DELETE", f"/v1/datasets/{dataset_id}", _model(Dataset), safe=False)


def get_json(path: str, params: Mapping[str, Any] | None = None) -> Call[Any]:
    """Any other read (``/v1/pool``, ``/v1/problems``, ``/openapi.json``) as plain JSON."""
    return Call("GET", path, lambda r: r.json(), params=params)


def send_json(method: str, path: str, body: Any, *, safe: bool = False) -> Call[Any]:
    """Any other write (webhooks, keys) as plain JSON."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data is not None else {}
    return Call(method, path, lambda r: r.json() if r.content else None, body=data,
                headers=headers, safe=safe)  # fmt: skip
