"""The OpenAPI document as client generators read it: operation ids and error media types.

FastAPI's default operation id joins a route's name, path and method
(``submit_job_v1_jobs_post``), and generators make method names of it. :func:`operation_id`
names each operation ``<tag>-<function>`` instead (``jobs-submit_job``), as FastAPI's guide to
client generation suggests; the names are unique because no two routes of a router share a
function name. :class:`App` documents error responses as ``application/problem+json``, the
type :mod:`api.errors` sends them with.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

__all__ = ["App", "operation_id"]


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
