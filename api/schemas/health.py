"""Bodies of ``/healthz`` and ``/readyz``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

__all__ = ["Health", "Readiness"]


class Health(BaseModel):
    """The process is up."""

    status: Literal["ok"]


class Readiness(Health):
    """The database and the broker (or the embedded executor) answer."""

    database: str = Field(description="`ok`, else `error: <exception type>`")
    broker: str = Field(description="`ok`, else `unreachable`")
