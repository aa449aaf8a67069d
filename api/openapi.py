"""The OpenAPI document as client generators read it, and the ``responses`` routers share.

FastAPI's default operation id joins a route's name, path and method
(``submit_job_v1_jobs_post``), and generators make method names of it. :func:`operation_id`
names each operation ``<tag>-<function>`` instead (``jobs-submit_job``), as FastAPI's guide to
client generation suggests; the names are unique because no two routes of a router share a
function name. :class:`App` documents error responses as ``application/problem+json``, the
type :mod:`api.errors` sends them with. :func:`problem_doc`, :func:`auth_responses`,
:func:`file_doc` and :func:`links_to` write the entries of a route's ``responses``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from api.schemas.errors import Problem

__all__ = [
    "BINARY_SCHEMA",
    "NPZ",
    "OCTET_STREAM",
    "App",
    "auth_responses",
    "file_doc",
    "file_media_type",
    "links_to",
    "operation_id",
    "problem_doc",
]

#: The media type of a NumPy ``.npz`` archive (``numpy.savez``), as the hparams route sends it.
NPZ = "application/x-npz"
#: Raw bytes: the one binary media type client generators know (openapi-python-client drops
#: a response offered under any other, with a warning)
OCTET_STREAM = "application/octet-stream"
#: The JSON Schema of a body of raw bytes: generators make a file or bytes type of it.
BINARY_SCHEMA: dict[str, Any] = {"type": "string", "format": "binary"}


def operation_id(route: APIRoute) -> str:
    """The operation id of ``route``: its first tag and its function's name.

    Args:
        route: a route of the app; one without tags (the dashboard's, outside the schema)
            keeps its function's name alone.

    Returns:
        ``"<tag>-<name>"``, e.g. ``"jobs-submit_job"``.
    """
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


class App(FastAPI):
    """A ``FastAPI`` app whose OpenAPI document gives errors as ``application/problem+json``.

    FastAPI writes a response's model under ``application/json`` whatever the route's
    ``responses`` say; the document is fixed once, when it is first built.
    """

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI document, built once, with 4xx and 5xx bodies as problem+json.

        Returns:
            The document served at ``/openapi.json``.
        """
        if self.openapi_schema is None:
            schema = super().openapi()
            for path in schema["paths"].values():
                for op in path.values():
                    for code, resp in op.get("responses", {}).items():
                        content = resp.get("content", {})
                        if code[0] in "45" and "application/json" in content:
                            content["application/problem+json"] = content.pop("application/json")
            self.openapi_schema = schema
        return self.openapi_schema


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
    """An OpenAPI ``responses`` entry: a file of ``media_type``, also offered as raw bytes.

    A route that returns a plain ``Response`` documents no schema, and generators then drop
    the body (or the whole operation); ``{"type": "string", "format": "binary"}`` makes them
    return the bytes. A generator that knows no ``media_type`` (openapi-python-client knows
    JSON, text and ``application/octet-stream``) drops the operation with a warning, so the
    file is offered as :data:`OCTET_STREAM` too, after its own type; the route sends it so to
    a client that asks (:func:`file_media_type`).

    Args:
        media_type: the ``Content-Type`` the route sends by default.
        description: what the file holds.

    Returns:
        The entry, for a route's ``responses``.
    """
    types = dict.fromkeys((media_type, OCTET_STREAM))
    return {"description": description,
            "content": {t: {"schema": BINARY_SCHEMA} for t in types}}  # fmt: skip


def file_media_type(accept: str | None, media_type: str) -> str:
    """The type to send a file of ``media_type`` with, given the request's ``Accept``.

    :data:`OCTET_STREAM` when the client accepts it but not ``media_type`` (a generated
    client asks for the type it was written for), else ``media_type`` itself.

    Args:
        accept: the request's ``Accept`` header, if any.
        media_type: the file's own type (:func:`file_doc`'s first).

    Returns:
        The ``Content-Type`` to answer with.
    """
    if not accept:
        return media_type
    ranges = {r.split(";")[0].strip().lower() for r in accept.split(",")}
    if OCTET_STREAM in ranges and media_type not in ranges:
        return OCTET_STREAM
    return media_type
