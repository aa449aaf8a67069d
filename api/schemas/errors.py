"""The body of every error: an RFC 9457 problem document and its field errors."""

from __future__ import annotations

from pydantic import BaseModel

__all__ = ["FieldError", "Problem"]


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
